"""Return paths read from damaged bounce reports never raise."""

from __future__ import annotations

from nurture.mail.verp import ReturnPath


def test_a_return_path_whose_mac_holds_non_ascii_characters_is_not_ours() -> None:
    paths = ReturnPath("bounces.example.com", "secret")
    good = paths.address(42)
    assert paths.send_id(good) == 42
    damaged = good.replace("-", "-\udc80", 1)  # an undecodable byte, as a damaged report reads
    assert paths.send_id(damaged) is None
    assert paths.send_id(good.replace("-", "-é", 1)) is None
