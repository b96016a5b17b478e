"""One place decides short or long reads from the platform, however the platform is spelled."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.platforms import (
    INSTRUMENTS,
    PLATFORMS,
    Technology,
    UnknownPlatform,
    platform_key,
    sam_platform,
    sequencing_technology,
)

# As submitters and instruments write them, with what each must decide.
NAMES: dict[str, tuple[str, Technology]] = {
    "Illumina": ("ILLUMINA", Technology.SHORT_READ),
    "ILLUMINA": ("ILLUMINA", Technology.SHORT_READ),
    "NovaSeq 6000": ("ILLUMINA", Technology.SHORT_READ),
    "NovaSeq X Plus": ("ILLUMINA", Technology.SHORT_READ),
    "MGI": ("DNBSEQ", Technology.SHORT_READ),
    "DNBSEQ": ("DNBSEQ", Technology.SHORT_READ),
    "Element Biosciences": ("ELEMENT", Technology.SHORT_READ),
    "AVITI": ("ELEMENT", Technology.SHORT_READ),
    "Ultima": ("ULTIMA", Technology.SHORT_READ),
    "PacBio Onso": ("PACBIO", Technology.SHORT_READ),
    "PacBio": ("PACBIO", Technology.PACBIO),
    "PACBIO": ("PACBIO", Technology.PACBIO),
    "Pacific Biosciences": ("PACBIO", Technology.PACBIO),
    "PacBio HiFi": ("PACBIO", Technology.PACBIO),
    "Revio": ("PACBIO", Technology.PACBIO),
    "Sequel IIe": ("PACBIO", Technology.PACBIO),
    "ONT": ("ONT", Technology.ONT),
    "Oxford Nanopore": ("ONT", Technology.ONT),
    "Oxford Nanopore Technologies": ("ONT", Technology.ONT),
    "nanopore": ("ONT", Technology.ONT),
    "PromethION 24": ("ONT", Technology.ONT),
    "MinION": ("ONT", Technology.ONT),
    "PacBio Revio": ("PACBIO", Technology.PACBIO),
    "Illumina NovaSeq X": ("ILLUMINA", Technology.SHORT_READ),
    "Oxford Nanopore PromethION": ("ONT", Technology.ONT),
    "MGI DNBSEQ-G400": ("DNBSEQ", Technology.SHORT_READ),
}


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str, Technology]:
    """A known platform with its letters' case changed and separators put between them."""
    name, (pl, technology) = draw(st.sampled_from(sorted(NAMES.items())))
    out = []
    for char in name:
        out.append(char.upper() if draw(st.booleans()) else char.lower())
        out.append(draw(st.sampled_from(["", "", "", " ", "-", "_"])))
    padded = draw(st.sampled_from(["", " "])) + "".join(out) + draw(st.sampled_from(["", " ", "\t"]))
    return padded, pl, technology


@given(spellings())
def test_a_platform_decides_the_same_however_it_is_spelled(spelled: tuple[str, str, Technology]) -> None:
    platform, pl, technology = spelled
    assert sequencing_technology(platform) is technology
    assert sam_platform(platform) == pl
    assert sam_platform(sam_platform(platform)) == pl


@given(st.sampled_from(sorted(PLATFORMS)))
def test_every_named_platform_keeps_its_decision_through_its_sam_value(key: str) -> None:
    pl, technology = PLATFORMS[key]
    assert sam_platform(key) == pl == sam_platform(pl)
    if technology.long_read:
        assert sequencing_technology(pl) is technology


def known(platform: str) -> bool:
    """An independent statement of the rule: a name, an instrument, or a vendor's own instrument."""
    key = platform_key(platform)
    return (
        key in PLATFORMS
        or any(key.startswith(prefix) for prefix, _ in INSTRUMENTS)
        or any(
            key.startswith(vendor + prefix) and PLATFORMS[vendor][0] == found[0]
            for vendor in PLATFORMS
            for prefix, found in INSTRUMENTS
        )
    )


@given(st.text(max_size=30))
def test_a_platform_nobody_named_is_refused(platform: str) -> None:
    if known(platform):
        assert isinstance(sequencing_technology(platform), Technology)
    else:
        with pytest.raises(UnknownPlatform, match="unknown sequencing platform"):
            sequencing_technology(platform)


@pytest.mark.parametrize(
    "platform",
    ["", " ", "Sanger", "long", "short-read", "PacBioo", "ONTX", "Illumina PromethION", "ONT Revio"],
)
def test_near_misses_are_refused(platform: str) -> None:
    with pytest.raises(UnknownPlatform):
        sequencing_technology(platform)


@given(st.sampled_from(sorted(PLATFORMS)), st.sampled_from(INSTRUMENTS), st.text(max_size=8))
def test_a_vendors_name_before_an_instrument_must_be_its_own(
    vendor: str, instrument: tuple[str, tuple[str, Technology]], model: str
) -> None:
    prefix, (pl, technology) = instrument
    platform = f"{vendor} {prefix}{model}"
    if PLATFORMS[vendor][0] == pl:
        assert (sam_platform(platform), sequencing_technology(platform)) == (pl, technology)
    elif not known(platform):
        with pytest.raises(UnknownPlatform):
            sequencing_technology(platform)
