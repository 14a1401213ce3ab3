#!/usr/bin/env python3
# docs/soft-routing.md ("Interval image"): src/soft/image.rs covers the
# Taylor truncations of src/expbound.rs by relative slacks (TAYLOR_UP,
# SERIES_DOWN). Run: python3 benches/soft_image_slack.py (about 20 s).
# Checks image.rs's slack constants at every grid point the exact bounds use,
# in 80-digit decimal arithmetic (the margins are a factor >= 9 wide).
from decimal import Decimal as D, getcontext
from fractions import Fraction as F
import math
getcontext().prec = 80
def taylor(x, n):
    t = F(1); s = F(1)
    for j in range(1, n + 1):
        t = t * x / j; s += t
    return s
def expd(x):  # e^x for a Fraction x, 80 digits
    return (D(x.numerator) / D(x.denominator)).exp()
worst_up = D(0)
for k in range(1, 2048):
    x = F(k, 64); n = 2 * math.ceil(x) + 10
    r = (1 / (D(taylor(x, n).numerator) / D(taylor(x, n).denominator))) / expd(-x)
    worst_up = max(worst_up, r - 1)
worst_down = D(0)
for k in range(1, 40 * 64 + 2):
    x = F(k, 64); y = x; h = 0
    while y > 1:
        y /= 2; h += 1
    b = taylor(-y, 11)
    for _ in range(h):
        b = b * b
    r = (D(b.numerator) / D(b.denominator)) / expd(-x)
    worst_down = max(worst_down, 1 - r)
print("max 1/T_n(x)/e^-x - 1 over x=k/64<32:", "%.3e" % worst_up, "(TAYLOR_UP slack 1e-6)")
print("max 1 - exp_neg_lower(x)/e^-x over x<=40+1/64:", "%.3e" % worst_down, "(SERIES_DOWN slack 1e-5)")
