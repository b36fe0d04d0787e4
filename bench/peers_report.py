"""Turns bench/peers.sh's raw measurements into the table it prints, and into JSON and CSV.

Why a separate file: the shell script measures (times, CPU, RSS, row counts) and this one does
the arithmetic and the layout, which awk would make unreadable: rates from process start and
once running, CPU per 100,000 rows, the ledger's ratio to each peer, the targets beside the
figures, and the delivery guarantee each contender showed when it was killed with SIGKILL and
restarted. Standard library only (it runs with the system python3).

Usage: peers_report.py RESULTS_TSV CRASH_TSV OUT_PREFIX [KEY=VALUE ...]
  writes OUT_PREFIX.json, OUT_PREFIX.csv (the runs) and OUT_PREFIX-kill.csv (the kill -9 runs);
  KEY=VALUE pairs go into the JSON's "meta".
"""

import csv
import json
import sys

RUN_FIELDS = ["name", "kind", "rows", "t0", "first", "first_rows", "end", "cpu_first_s", "cpu_s", "pg_cpu_s",
              "rss_kib", "same_rows", "note"]
CRASH_FIELDS = ["name", "kind", "expected", "rows_at_kill", "rows", "distinct", "ended"]

# What each contender promises, and which kill -9 run shows what that means in rows.
MECHANISM = {
    "ledger": ("ledger_kill", "exactly once: offsets commit in the rows' transaction"),
    "connect-insert": ("connect_insert_kill", "at least once: redelivery after a crash hits the key"),
    "connect-upsert": ("connect_upsert_kill", "at least once, made idempotent by the upsert"),
    "seed": ("seed_kill", "auto-commit: a crash duplicates (or skips) what was in flight"),
    "copy": (None, "one transaction: all or nothing"),
}
TARGETS = {"connect_rate": 3.0, "connect_cpu": 10.0, "seed_rate": 50.0, "copy_share": 0.85}


def label(name: str, meta: dict) -> str:
    if name == "ledger":
        return "ledger (defaults, tuple log on)"
    if name == "copy":
        return "PostgreSQL COPY (same table)"
    if name == "seed":
        return f"seed-style Python, {meta.get('seed_seconds', '?')} s budget"
    if name.startswith("connect_"):
        _, mode, batch = name.split("_")
        return f"Connect + Debezium JDBC, {mode}, batch {batch}"
    return name


def num(value: str) -> float | None:
    return float(value) if value not in ("", "-") else None


def read_tsv(path: str, fields: list) -> list:
    try:
        with open(path) as f:
            return [dict(zip(fields, line.rstrip("\n").split("\t"))) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def derive(run: dict, meta: dict) -> dict:
    rows, t0, first, end = int(run["rows"]), float(run["t0"]), num(run["first"]), float(run["end"])
    first = t0 if first is None else first
    first_rows = int(run["first_rows"] or 0)
    total = max(end - t0, 1e-9)
    running = end - first
    cpu, pg_cpu, rss = num(run["cpu_s"]), num(run["pg_cpu_s"]), num(run["rss_kib"])
    cpu_first = num(run["cpu_first_s"])
    cpu_running = None
    if cpu is not None and cpu_first is not None and rows > first_rows:
        cpu_running = round((cpu - cpu_first) / (rows - first_rows) * 1e5, 2)
    return {
        "name": run["name"], "label": label(run["name"], meta), "kind": run["kind"], "rows": rows,
        "seconds": round(total, 2),
        "rows_per_s_from_start": round(rows / total),
        "rows_per_s_running": round((rows - first_rows) / running) if running > 0 else round(rows / total),
        "cpu_s": cpu, "cpu_s_per_100k": round(cpu / rows * 1e5, 2) if cpu and rows else None,
        "cpu_s_per_100k_running": cpu_running,
        "pg_cpu_s": pg_cpu, "pg_cpu_s_per_100k": round(pg_cpu / rows * 1e5, 2) if pg_cpu and rows else None,
        "peak_rss_mib": round(rss / 1024) if rss else None,
        "same_rows_as_ledger": run["same_rows"], "note": run["note"],
    }


def guarantee(run: dict, crashes: dict) -> str:
    crash_name, mechanism = MECHANISM.get(run["kind"], (None, "?"))
    crash = crashes.get(crash_name)
    if not crash:
        return mechanism
    return f"{mechanism}; kill -9: {crash['rows']} rows, {crash['distinct']} distinct of {crash['expected']}"


def ratios(runs: list) -> None:
    """The ledger's ratio to each run: rate once running (x), CPU per row from process start and
    once running (x less)."""
    ledger = next(r for r in runs if r["name"] == "ledger")
    for run in runs:
        run["ledger_rate_x"] = round(ledger["rows_per_s_running"] / run["rows_per_s_running"], 2)
        for key, out in (("cpu_s_per_100k", "ledger_cpu_x"), ("cpu_s_per_100k_running", "ledger_cpu_running_x")):
            mine, theirs = ledger[key], run[key]
            run[out] = round(theirs / mine, 1) if mine and theirs else None


def targets(runs: list) -> list:
    """The issue's targets, each against the peer's best run (the hardest comparison)."""
    by_kind = lambda prefix: [r for r in runs if r["kind"].startswith(prefix) and r["rows"] > 0]  # noqa: E731
    ledger = next(r for r in runs if r["name"] == "ledger")
    out = []
    connect = by_kind("connect")
    if connect:
        fastest = max(connect, key=lambda r: r["rows_per_s_running"])
        leanest = min(connect, key=lambda r: r["cpu_s_per_100k_running"] or float("inf"))
        out.append(target("rate vs Connect's fastest sink (once running)", fastest["ledger_rate_x"],
                          TARGETS["connect_rate"], "x", fastest["label"]))
        out.append(target("CPU per row vs Connect's leanest sink (once running)", leanest["ledger_cpu_running_x"],
                          TARGETS["connect_cpu"], "x less",
                          f"{leanest['label']}; from process start: {leanest['ledger_cpu_x']}x less"))
    seed = by_kind("seed")
    if seed:
        out.append(target("rate vs the seed-style consumer (once running)", seed[0]["ledger_rate_x"],
                          TARGETS["seed_rate"], "x", seed[0]["label"]))
    copy = by_kind("copy")
    if copy:
        share = ledger["rows_per_s_running"] / copy[0]["rows_per_s_running"]
        start = ledger["rows_per_s_from_start"] / copy[0]["rows_per_s_running"]
        out.append(target("share of COPY into the same table (once running)", round(share, 3),
                          TARGETS["copy_share"], "", f"from process start: {start:.1%}"))
    return out


def target(what: str, value, goal: float, unit: str, against: str) -> dict:
    met = value is not None and value >= goal
    return {"what": what, "value": value, "target": goal, "unit": unit, "met": met, "against": against}


def fmt(value, pattern: str = "{:,.0f}") -> str:
    return "-" if value is None else pattern.format(value)


def print_runs(runs: list, meta: dict) -> None:
    print(f"\nbench-peers: {meta.get('records')} transactions over {meta.get('accounts')} accounts, "
          f"3 partitions, one run ({meta.get('run')}, {meta.get('date')})")
    print("(rows/s: from process start, and once running = first row visible to last; CPU: the "
          "contender's process, per 100k rows from start / once running; PG: its own backends)")
    head = ("contender", "rows", "rows/s", "running", "CPU s", "/100k", "running", "PG s", "PG/100k",
            "RSS MiB", "same", "ledger x", "CPU x less")
    line = "%-44s %7s %8s %8s %6s %6s %7s %5s %7s %7s %4s %8s %10s"
    print(line % head)
    for r in runs:
        cpu_x = f"{fmt(r['ledger_cpu_x'], '{:.0f}')}/{fmt(r['ledger_cpu_running_x'], '{:.0f}')}"
        print(line % (
            r["label"], r["rows"], fmt(r["rows_per_s_from_start"]), fmt(r["rows_per_s_running"]),
            fmt(r["cpu_s"], "{:.1f}"), fmt(r["cpu_s_per_100k"], "{:.2f}"), fmt(r["cpu_s_per_100k_running"], "{:.2f}"),
            fmt(r["pg_cpu_s"], "{:.1f}"), fmt(r["pg_cpu_s_per_100k"], "{:.2f}"), fmt(r["peak_rss_mib"]),
            r["same_rows_as_ledger"], fmt(r["ledger_rate_x"], "{:.2f}"), cpu_x))
    print("\ndelivery guarantee (promised; what a kill -9 and restart left in the table):")
    for r in runs:
        print(f"  {r['label']:<42} {r['guarantee']}")
    seed = next((r for r in runs if r["kind"] == "seed"), None)
    if seed and seed["rows_per_s_running"]:
        minutes = int(meta.get("records", 0)) / seed["rows_per_s_running"] / 60
        print(f"\nThe seed-style consumer ran on a {seed['note']} from process start, not on all "
              f"{meta.get('records')} rows (at its rate they would take {minutes:.0f} min); its figures "
              f"are over the {seed['rows']} rows it stored in that time.")


def print_crashes(crashes: list, meta: dict) -> None:
    print("\nkill -9 at %s%% of the rows, then restart (until done, or no progress for %s s):" % (
        meta.get("kill_percent", "?"), meta.get("stall_seconds", "?")))
    print("%-24s %9s %13s %9s %13s  %s" % ("run", "expected", "rows at kill", "rows", "distinct ids", "ended"))
    for c in crashes:
        print("%-24s %9s %13s %9s %13s  %s" % (c["name"], c["expected"], c["rows_at_kill"], c["rows"],
                                               c["distinct"], c["ended"]))
    print("(seed_kill: a slice of the topic, on a table without a primary key on transaction_id, as the")
    print(" seeds' tables have only a SERIAL id: duplicates show as extra rows, losses as missing ids)")


def print_targets(checks: list) -> None:
    print("\ntargets (reported, not enforced):")
    for t in checks:
        value = fmt(t["value"], "{:.1%}" if t["unit"] == "" else "{:.2f}")
        goal = f"{t['target']:.0%}" if t["unit"] == "" else f"{t['target']:g}{t['unit']}"
        print(f"  {t['what']:<50} {value:>8}{t['unit']:<7} target >= {goal:<10} "
              f"{'met' if t['met'] else 'NOT met'}   ({t['against']})")


def write(prefix: str, meta: dict, runs: list, crashes: list, checks: list) -> None:
    with open(prefix + ".json", "w") as f:
        json.dump({"meta": meta, "runs": runs, "kill_restart": crashes, "targets": checks}, f, indent=2)
    for path, rows in ((prefix + ".csv", runs), (prefix + "-kill.csv", crashes)):
        if rows:
            with open(path, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)


def main(argv: list) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__)
    meta = dict(kv.split("=", 1) for kv in argv[3:])
    runs = [derive(r, meta) for r in read_tsv(argv[0], RUN_FIELDS)]
    if not any(r["name"] == "ledger" for r in runs):
        raise SystemExit(f"{argv[0]}: no ledger run to compare with")
    crashes = read_tsv(argv[1], CRASH_FIELDS)
    by_name = {c["name"]: c for c in crashes}
    for run in runs:
        run["guarantee"] = guarantee(run, by_name)
    ratios(runs)
    checks = targets(runs)
    print_runs(runs, meta)
    print_crashes(crashes, meta)
    print_targets(checks)
    write(argv[2], meta, runs, crashes, checks)


if __name__ == "__main__":
    main(sys.argv[1:])
