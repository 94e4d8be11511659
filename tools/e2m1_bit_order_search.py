#!/usr/bin/env python3
"""The fused Hopper GEMM's E2M1 bit order (exec/include/racksim/exec/fp4.hpp): an exhaustive search.

FP16 wants an E2M1 code's exponent-mantissa bits (3, contiguous) at bits 9..11 of a 16-bit half
and its sign at bit 15 (values x 2^-14). A 32-bit word holds 8 codes, 4 per 16-bit half, and both
halves of an FP16 pair are decoded by the same instructions, so a layout is a placement in the
16-bit half of four groups {x, x+1, x+2} + {y}. Decoding a group costs one AND if both parts need
the same shift (9 - x == 15 - y), else two ANDs (and an OR folded into the second, as LOP3 does),
plus one SHF per distinct non-zero shift amount in the whole word. Prints the cheapest layouts and
the cost of the row-major order (x = 4i, y = 4i + 3), which is 15.
Usage: python3 tools/e2m1_bit_order_search.py
"""


def cost(groups):
    shifts = set()
    c = 0
    for x, y in groups:
        se, ss = 9 - x, 15 - y
        shifts.update(s for s in (se, ss) if s)
        c += 1 if se == ss else 2
    return c + len(shifts)


def search():
    placements = [(x, y) for x in range(14) for y in range(16) if y not in (x, x + 1, x + 2)]
    found = []

    def rec(used, chosen):
        if len(chosen) == 4:
            found.append((cost(chosen), sorted(chosen)))
            return
        first = min(set(range(16)) - used)
        for x, y in placements:
            bits = {x, x + 1, x + 2, y}
            if first in bits and not bits & used:
                rec(used | bits, chosen + [(x, y)])

    rec(set(), [])
    return sorted(found)


if __name__ == "__main__":
    layouts = search()
    best = layouts[0][0]
    print(f"row-major order: {cost([(4 * i, 4 * i + 3) for i in range(4)])} instructions per word")
    print(f"best: {best} instructions per word, {sum(1 for c, _ in layouts if c == best)} layouts of {len(layouts)}, e.g.:")
    for c, g in layouts:
        if c == best:
            print("  (eem bit, sign bit) per pair:", g)
    print("racksim's (fp4.hpp): [(9, 15), (6, 12), (0, 13), (3, 14)] ->", cost([(9, 15), (6, 12), (0, 13), (3, 14)]))
