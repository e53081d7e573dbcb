"""Pure pieces of the object-store source: URLs, listing completeness, config validation."""

from __future__ import annotations

import pytest
from tfmodel_server.model_servers.config_file import (
    ConfigError,
    parse_model_server_config,
    validate_model_server_config,
)
from tfmodel_server.servables.tensorflow.saved_model_files import listing_incomplete_reason
from tfmodel_server.sources.s3 import S3Location, parse_s3_url, safe_relpath


def test_parse_s3_url():
    assert parse_s3_url("s3://bucket/models/resnet/") == S3Location("bucket", "models/resnet")
    assert parse_s3_url("s3://bucket") == S3Location("bucket", "")
    assert parse_s3_url("s3://b/m").child("7").url == "s3://b/m/7"
    for bad in ("s3://", "s3:///x", "s3://b/a//c", "s3://b/../etc", "/local/path"):
        with pytest.raises(ValueError):
            parse_s3_url(bad)


def test_safe_relpath():
    assert safe_relpath("variables/variables.index")
    for bad in ("", "/abs", "a/../b", "./a", "a//b", ".."):
        assert not safe_relpath(bad)


def test_listing_completeness_matches_the_directory_rule():
    assert listing_incomplete_reason({"variables/variables.index"}) is not None
    assert listing_incomplete_reason({"saved_model.pb"}) is None
    shards = {"variables/variables.data-00000-of-00002", "variables/variables.index"}
    assert "missing variables.data-00001-of-00002" in listing_incomplete_reason(
        {"saved_model.pb", *shards}
    )
    assert (
        listing_incomplete_reason(
            {"saved_model.pb", *shards, "variables/variables.data-00001-of-00002"}
        )
        is None
    )
    assert "no variables.index" in listing_incomplete_reason(
        {"saved_model.pb", "variables/variables.data-00000-of-00001"}
    )


def test_config_accepts_s3_base_paths_only_among_uris():
    ok = parse_model_server_config(
        'model_config_list { config { name: "m" base_path: "s3://b/models/m" } }', "t"
    )
    validate_model_server_config(ok, "t")
    for base, problem in (
        ("gs://b/m", "only local file system paths and s3://"),
        ("s3://", "no bucket"),
    ):
        cfg = parse_model_server_config(
            f'model_config_list {{ config {{ name: "m" base_path: "{base}" }} }}', "t"
        )
        with pytest.raises(ConfigError, match=problem):
            validate_model_server_config(cfg, "t")
