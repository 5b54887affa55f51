"""Go's text/tabwriter (no flags): tab-terminated cells aligned in column blocks."""


def tabwrite(text, minwidth=10, tabwidth=1, padding=3, padchar=" "):
    lines = [line.split("\t") for line in text.split("\n")]
    widths = []
    out = []

    def write_lines(l0, l1):
        for i in range(l0, l1):
            cells = lines[i]
            for j, c in enumerate(cells):
                out.append(c)
                if j < len(widths):
                    out.append(padchar * (widths[j] - len(c)))
            if i + 1 != len(lines):
                out.append("\n")

    def fmt(l0, l1):
        column = len(widths)
        this = l0
        while this < l1:
            if column >= len(lines[this]) - 1:
                this += 1
                continue
            write_lines(l0, this)
            l0 = this
            width = minwidth
            while this < l1:
                line = lines[this]
                if column >= len(line) - 1:
                    break
                width = max(width, len(line[column]) + padding)
                this += 1
            widths.append(width)
            fmt(l0, this)
            widths.pop()
            l0 = this
            this += 1
        write_lines(l0, l1)

    fmt(0, len(lines))
    return "".join(out)
