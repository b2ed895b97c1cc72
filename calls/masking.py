"""Phone numbers as people may see them in lists, notifications and exports."""

from __future__ import annotations

MASK = "•"
VISIBLE_DIGITS = 4


def mask_phone(number: str) -> str:
    """``+14155550123`` -> ``+•••••••0123``: enough to tell calls apart, not to dial.

    Only digits are masked, so the number keeps its shape (``+``, spaces, dashes).
    """
    digits_seen = sum(character.isdigit() for character in number)
    keep_from = digits_seen - VISIBLE_DIGITS
    masked = []
    index = 0
    for character in number:
        if character.isdigit():
            masked.append(character if index >= keep_from else MASK)
            index += 1
        else:
            masked.append(character)
    return "".join(masked)
