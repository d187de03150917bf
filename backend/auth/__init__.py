"""Web sign-in: server-side sessions, phone one-time codes, staff passwords + TOTP, step-up,
Telegram<->web linking and the database-backed rate limits (docs/security.md)."""
