"""Pure domain calculators (money now; schedule, interest and allocation later). No I/O imports."""
