"""Integer helpers shared by every layer that counts fixed-size blocks (KV-cache pages, quantization
groups, padded widths). Lives in kernels/, the lowest layer, so that anything may import it."""


def ceil_div(a, b):  # int, int > 0 -> int
    """The number of size-b blocks that hold a items: ceil(a / b), exactly, in integers.
    Floor division rounds towards -inf, so negating before and after rounds towards +inf."""
    return -(-a // b)
