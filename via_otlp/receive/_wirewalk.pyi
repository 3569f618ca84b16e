"""Types of the compiled walker (_wirewalk.c): see its header comment."""

from collections.abc import Callable

MAX_RENDER_DEPTH: int

def walk(
    raw: bytes,
    unique_keys: tuple[bytes, ...],
    hint_key: bytes,
    render: Callable[[bytes], str],
    hint_text: Callable[[bytes], str],
    severity: Callable[[str, int], str],
) -> (
    tuple[
        list[str],
        list[str],
        list[int],
        list[bytes] | tuple[bytes, int],
        list[str],
        list[str],
        int,
        int,
    ]
    | None
): ...
