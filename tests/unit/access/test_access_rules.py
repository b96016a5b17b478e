"""The access service's pure rules, without a broker or a database: who decides and revokes,
what a grant opens when, the ledger's chain, discovery's answer, and request refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.access.discovery import KnownSample, answer
from services.access.grants import (
    Decision,
    NotAllowed,
    Standing,
    check_decider,
    check_revoker,
    grant_end,
    standing,
)
from services.access.ledger import GENESIS, Entry, chained, first_break
from services.access.request_body import RequestRefused, parse_request
from shared.auth import Principal, Role, Tokens, token_hash
from shared.events import AnalysisType, Region

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
H = Region.HOVEDSTADEN
STEWARD_H = Principal("hovedstaden", frozenset({Role.DATA_STEWARD}))


def test_only_the_owners_data_steward_decides() -> None:
    check_decider(STEWARD_H, H)
    for other in (
        Principal("syddanmark", frozenset({Role.DATA_STEWARD})),
        Principal("ngc", frozenset(Role)),
        Principal("hovedstaden", frozenset({Role.CLINICIAN, Role.OPERATOR})),
    ):
        with pytest.raises(NotAllowed, match="only hovedstaden's data steward"):
            check_decider(other, H)


def test_the_owners_steward_or_ngcs_operator_revokes() -> None:
    check_revoker(STEWARD_H, H)
    check_revoker(Principal("ngc", frozenset({Role.OPERATOR})), H)
    for other in (
        Principal("syddanmark", frozenset({Role.DATA_STEWARD})),
        Principal("ngc", frozenset({Role.FINANCE})),
    ):
        with pytest.raises(NotAllowed):
            check_revoker(other, H)


def test_a_grant_opens_nothing_after_its_end_or_its_revocation() -> None:
    end = grant_end(T0, 14)
    assert end == T0 + timedelta(days=14)
    granted = Decision(True, T0, end)
    assert standing(None, None, T0) is Standing.PENDING
    assert standing(Decision(False, T0, None), None, T0) is Standing.DENIED
    assert standing(granted, None, end - timedelta(microseconds=1)) is Standing.GRANTED
    assert standing(granted, None, end) is Standing.EXPIRED
    assert standing(granted, T0 + timedelta(hours=1), T0 + timedelta(hours=1)) is Standing.REVOKED
    assert standing(granted, T0 + timedelta(hours=1), T0 + timedelta(minutes=59)) is Standing.GRANTED
    with pytest.raises(ValueError):
        grant_end(T0, 0)


def _chain(n: int) -> list[Entry]:
    entries: list[Entry] = []
    for seq in range(1, n + 1):
        entries.append(
            chained(
                seq=seq,
                at=(T0 + timedelta(seconds=seq)).isoformat(),
                actor="syddanmark",
                action="discovery",
                request_id=None,
                case_reference=f"case-{seq}",
                concerns=["hovedstaden", "syddanmark"],
                detail={"answered": {"exists": True, "count": seq}},
                prev_sha256=entries[-1].sha256 if entries else GENESIS,
            )
        )
    return entries


def test_the_ledger_chain_holds_and_names_the_first_edited_entry() -> None:
    entries = _chain(5)
    assert first_break(entries) is None
    assert entries[0].prev_sha256 == GENESIS
    edited = [*entries[:2], Entry(**{**entries[2].__dict__, "case_reference": "rewritten"}), *entries[3:]]
    broken = first_break(edited)
    assert broken is not None and broken.seq == 3 and "edited" in broken.reason
    # Re-hashing the edited entry does not help: the next one's link breaks instead.
    rehashed = chained(**{k: v for k, v in edited[2].__dict__.items() if k != "sha256"})
    broken = first_break([*entries[:2], rehashed, *entries[3:]])
    assert broken is not None and broken.seq == 4
    missing = first_break([*entries[:2], *entries[3:]])
    assert missing is not None and missing.seq == 4 and "missing" in missing.reason


def _sample(region: Region, sample_id: str, month: int, accepted: bool = True) -> KnownSample:
    return KnownSample(
        region, sample_id, "NP-1", AnalysisType.WGS, datetime(2026, month, 10, tzinfo=UTC), accepted
    )


def test_discovery_is_boolean_and_count_for_another_regions_data() -> None:
    found = [
        _sample(H, "S1", 1),
        _sample(H, "S2", 2),
        _sample(H, "S3", 2, accepted=False),
        _sample(Region.SYDDANMARK, "O1", 3),
    ]
    said = answer(found, Region.SYDDANMARK)
    assert said.exists and said.count == 3
    hovedstaden, syddanmark = said.regions
    assert (hovedstaden.region, hovedstaden.count, hovedstaden.samples) == (H, 2, None)
    assert (hovedstaden.first_received, hovedstaden.last_received) == ("2026-01", "2026-02")
    assert syddanmark.samples == ["O1"]  # its own region: record level
    assert "url" not in said.model_dump_json() and "store" not in said.model_dump_json()
    assert answer(found, None).regions[0].samples == ["S1", "S2"]  # NGC
    nothing = answer([], Region.SYDDANMARK)
    assert (nothing.exists, nothing.count, nothing.regions) == (False, 0, [])


REQUEST = {
    "owner": "hovedstaden",
    "patient": "NP-1",
    "department": "OUH Klinisk Genetik",
    "wants": ["harmonised-cram", "harmonised-vcf"],
    "genomic_ranges": [{"reference_name": "chr17", "start": 43044294, "end": 43125482}],
    "purpose": "patient-treatment",
    "case_reference": "OUH-2026-0042",
    "urgency": "urgent",
}


def test_a_request_is_for_patient_treatment_with_a_case_reference() -> None:
    assert parse_request(REQUEST).case_reference == "OUH-2026-0042"
    for broken, where in (
        ({k: v for k, v in REQUEST.items() if k != "purpose"}, "purpose"),
        ({**REQUEST, "purpose": "research"}, "body"),
        ({k: v for k, v in REQUEST.items() if k != "case_reference"}, "case_reference"),
        ({**REQUEST, "samples": ["S1"]}, "body"),
    ):
        with pytest.raises(RequestRefused) as refused:
            parse_request(broken)
        assert where in [p.field for p in refused.value.problems], refused.value.problems


@pytest.mark.parametrize(
    ("field", "value"),
    [("case_reference", "case of 010203-1234"), ("department", "0102031234"), ("note", "x")],
)
def test_a_cpr_number_anywhere_refuses_the_request_without_quoting_it(field: str, value: str) -> None:
    body = {**REQUEST, field: value}
    if field == "note":
        body = {**REQUEST, "0102031234": value}
    with pytest.raises(RequestRefused) as refused:
        parse_request(body)
    assert "CPR" in str(refused.value)
    assert "1234" not in str(refused.value)


def test_a_token_entry_has_a_holder_and_roles_and_the_old_form_keeps_working() -> None:
    tokens = Tokens(
        {
            token_hash("old-region"): "hovedstaden",
            token_hash("old-ngc"): "ngc",
            token_hash("steward"): {"holder": "hovedstaden", "roles": ["data-steward"]},
        }
    )
    assert tokens.authenticate("Bearer old-region").roles == {Role.UPLOADER}
    assert tokens.authenticate("Bearer old-ngc").roles == {Role.FINANCE, Role.OPERATOR}
    steward = tokens.authenticate("Bearer steward")
    assert (steward.name, steward.roles) == ("hovedstaden", frozenset({Role.DATA_STEWARD}))
    refused: list[dict[str, object]] = [
        {"holder": "hovedstaden", "roles": ["king"]},
        {"holder": "mars", "roles": []},
        {"roles": []},
        {"holder": "hovedstaden", "roles": "clinician"},
    ]
    for bad in refused:
        with pytest.raises(ValueError):
            Tokens({token_hash("x"): bad})


def test_a_harmonisations_files_become_drs_objects_with_stable_ids_and_no_location() -> None:
    from services.access.objects import drs_object, objects_of
    from shared.events import Deliverable
    from tests.unit.indexer.factories import harmonised, submission

    event = harmonised(submission(1, region="hovedstaden", sample="RH-1"))
    found = objects_of(event)
    assert {(o.name, o.deliverable) for o in found} == {
        ("R1.fastq.gz", Deliverable.RAW_READS),
        ("R2.fastq.gz", Deliverable.RAW_READS),
        ("RH-1.cram", Deliverable.HARMONISED_CRAM),
        ("RH-1.vcf.gz", Deliverable.HARMONISED_VCF),
    }
    assert [o.object_id for o in objects_of(event)] == [o.object_id for o in found]  # a replay: the same ids
    other = objects_of(harmonised(submission(1, region="syddanmark", sample="RH-1")))
    assert not {o.object_id for o in found} & {o.object_id for o in other}  # another region's sample
    shown = drs_object(found[2], "genomhub.ngc.dk").model_dump_json()
    assert '"type":"sha-256"' in shown and "s3://" not in shown and "drs://genomhub.ngc.dk/" in shown
    assert objects_of(harmonised(submission(2), status="failed")) == []
