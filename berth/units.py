"""Sizes and durations as docker prints them (go-units' HumanSize and HumanDuration)."""


def human_size(n):
    """docker's units.HumanSizeWithPrecision(n, 3): decimal units, 3 significant digits."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            s = f"{n:.3g}"
            if "e" in s:
                s = f"{n:.0f}"
            return f"{s}{unit}"
        n /= 1000.0


def human_duration(seconds):
    """docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // 24 // 7} weeks"
    if h < 24 * 365 * 2:
        return f"{h // 24 // 30} months"
    return f"{h // 24 // 365} years"
