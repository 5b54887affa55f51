"""Sizes and durations as docker prints and reads them (go-units' HumanSize, HumanDuration and
parseSize)."""


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


def parse_size(s, binary, suffix_words=False):
    """go-units' parseSize: RAMInBytes (binary: k=1024) or FromHumanSize (k=1000) of "64m",
    "1.5g", "512". A ValueError in go-units' words: "invalid size: '<s>'" (with suffix_words, a
    newer go-units' "invalid suffix: '<x>'" after a number), or strconv.ParseFloat's."""
    import re
    m = re.fullmatch(r"(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?", s)
    if not m:
        bad = suffix_words and re.fullmatch(r"(\d+(?:\.\d+)*) ?(.+)", s)
        raise ValueError(f"invalid suffix: '{bad.group(2)}'" if bad else f"invalid size: '{s}'")
    mult = (1024 if binary else 1000) ** " kmgtp".index((m.group(2) or " ").lower())
    try:
        return int(float(m.group(1)) * mult)
    except ValueError:  # "10.0.0.1": the pattern takes it, the number does not
        raise ValueError(f'strconv.ParseFloat: parsing "{m.group(1)}": invalid syntax') from None
