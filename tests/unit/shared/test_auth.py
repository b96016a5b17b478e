"""Bearer tokens: only hashes are configured; holders are regions or the national operator."""

from __future__ import annotations

import pytest

from shared.auth import Tokens, Unauthorized, token_hash


def test_tokens_authenticate_by_hash() -> None:
    tokens = Tokens({token_hash("secret-h"): "hovedstaden", token_hash("secret-n"): "ngc"})
    region = tokens.authenticate("Bearer secret-h")
    assert region.name == "hovedstaden" and not region.national
    assert region.may_act_for("hovedstaden") and not region.may_act_for("syddanmark")
    national = tokens.authenticate("bearer secret-n")
    assert national.national and national.may_act_for("syddanmark")
    for header in (None, "", "Bearer", "Basic secret-h", "Bearer wrong"):
        with pytest.raises(Unauthorized):
            tokens.authenticate(header)


def test_plain_tokens_and_unknown_holders_are_refused_in_configuration() -> None:
    with pytest.raises(ValueError, match="sha256"):
        Tokens({"plain-token": "hovedstaden"})
    with pytest.raises(ValueError, match="neither a region"):
        Tokens({token_hash("t"): "mars"})
