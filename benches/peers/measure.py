#!/usr/bin/env python3
"""Measurement helper for benches/compare.sh (Python standard library only).

  measure.py run --server NAME --clients N --pids-file FILE --out RESULTS.jsonl --timeout S -- LOADGEN...
      Reads the server's pids (one per line; for nginx the master and its worker) and takes a
      baseline of their CPU time (utime + stime, /proc/PID/stat fields 14 and 15, which cover all
      threads) and RSS (VmRSS, /proc/PID/status). Runs the load generator, sampling RSS and the
      server's open socket count every 0.2 s. The RSS at the end of the connect phase is the first
      sample where the server holds a socket for every client (or, if some never connect, the first
      sample at the highest socket count). After the load generator exits, takes the CPU time again
      and appends one JSON line: the load generator's JSON plus the server measurements.
      CPU s / GB (run) is that whole-run CPU time (connecting and closing included) per GB of
      payload received in the window. The load generator is also given the pids
      (--server-pid) and itself reads their exact CPU time (/proc/PID/task/*/schedstat) at the
      start and end of the steady state — from 1 s after every client is streaming to the end of
      its window — together with the bytes received in between: CPU s / GB (steady).
      The media columns divide by the media those bytes carry (moof+mdat: 3/4 of the base64
      payload), and wire B / media B is every byte received per media byte (ssecast-load's
      wire_per_media): 1.333 for a plain SSE stream of base64, about 1.0 compressed.

  measure.py table RESULTS.jsonl [--md FILE]
      Prints the comparison table (and writes it, with a details table, as Markdown to FILE).
      Several runs of one server and client count are merged: each number is their median.

  measure.py pids PID
      Prints PID and its child processes (for nginx: master + workers), one per line.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:  # field 4: ppid
            out.append(int(entry))
    return out


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # Fields after "pid (comm) ": state is field 3, so utime (14) and stime (15) are [11], [12].
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def socket_count(pid):
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def total(fn, pids):
    s = 0
    for pid in pids:
        try:
            s += fn(pid)
        except OSError:
            pass
    return s


def cmd_run(args):
    with open(args.pids_file) as f:
        pids = [int(line) for line in f if line.strip()]
    if not pids:
        sys.exit("measure: no server pids")
    cpu0 = total(cpu_seconds, pids)
    rss0 = total(rss_kib, pids)
    sock0 = total(socket_count, pids)

    stdout_path = args.out + ".stdout.tmp"
    with open(stdout_path, "wb") as out, open(args.loadgen_log, "ab") as err:
        # The load generator also reads the server's CPU time itself at the edges of the steady
        # state (every client streaming), exactly when it counts the bytes received in it.
        argv = list(args.loadgen)
        for pid in pids:
            argv += ["--server-pid", str(pid)]
        loadgen = subprocess.Popen(argv, stdout=out, stderr=err)
        started = time.monotonic()
        best_sockets, rss_connected, t_connected, reached = sock0, rss0, None, False
        rss_peak = rss0
        timed_out = False
        while loadgen.poll() is None:
            if time.monotonic() - started > args.timeout:
                loadgen.kill()
                timed_out = True
                break
            rss = total(rss_kib, pids)
            rss_peak = max(rss_peak, rss)
            if not reached:
                sockets = total(socket_count, pids)
                if sockets > best_sockets:
                    best_sockets, rss_connected = sockets, rss
                    t_connected = time.monotonic() - started
                if sockets - sock0 >= args.clients:
                    reached = True
            time.sleep(0.2)
        loadgen.wait()
    cpu1 = total(cpu_seconds, pids)
    rss_end = total(rss_kib, pids)
    alive = all(os.path.exists(f"/proc/{pid}") for pid in pids)

    with open(stdout_path) as f:
        lines = [line for line in f.read().splitlines() if line.strip().startswith("{")]
    os.unlink(stdout_path)
    try:
        report = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        report = {}
    sockets_added = best_sockets - sock0
    result = dict(report)
    result.update({
        "server": args.server,
        "target_clients": args.clients,
        "loadgen_exit": loadgen.returncode,
        "loadgen_timed_out": timed_out,
        "server_alive": alive,
        "server_cpu_s": round(cpu1 - cpu0, 3),
        "server_rss_base_kib": rss0,
        "server_rss_connected_kib": rss_connected,
        "server_rss_peak_kib": rss_peak,
        "server_rss_end_kib": rss_end,
        "server_sockets_added": sockets_added,
        "connect_phase_s": round(t_connected, 2) if t_connected is not None else None,
        "rss_kib_per_client": round((rss_connected - rss0) / sockets_added, 1)
        if sockets_added > 0 else None,
    })
    payload = report.get("payload_bytes")
    result["cpu_s_per_gb"] = round((cpu1 - cpu0) / (payload / 1e9), 2) if payload else None
    # Media (moof+mdat) is what the base64 payload encodes: 3/4 of it, for every server alike.
    result["cpu_s_per_media_gb"] = (round((cpu1 - cpu0) / (0.75 * payload / 1e9), 2)
                                    if payload else None)
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps(result))
    return 0 if report else 1


def fmt(v, spec="{:.1f}"):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return spec.format(v)
    return str(v)


def median_rows(runs):
    """Groups runs by (server, clients), in order of first appearance, into one row each whose
    numeric fields are the median over the runs."""
    groups = {}
    for r in runs:
        groups.setdefault((r["server"], r["target_clients"]), []).append(r)
    rows = []
    for (server, clients), group in groups.items():
        row = {"server": server, "target_clients": clients, "runs": len(group)}
        keys = {k for r in group for k, v in r.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)} - set(row)
        for k in keys:
            values = [r[k] for r in group
                      if isinstance(r.get(k), (int, float)) and not isinstance(r.get(k), bool)]
            if values:
                m = statistics.median(values)
                row[k] = round(m) if all(isinstance(v, int) for v in values) else m
        rows.append(row)
    return rows


def cmd_table(args):
    runs = []
    with open(args.results) as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    rows = median_rows(runs)
    head = ["server", "clients", "connected", "delivered MB/s", "CPU s / GB (run)",
            "CPU s / GB (steady)", "CPU s / media GB (run)", "CPU s / media GB (steady)",
            "wire B / media B", "RSS KiB / client", "spread p50 / p99 ms", "fell behind"]
    several = any(r["runs"] > 1 for r in rows)
    if several:
        head.append("runs (medians)")
    table = []
    for r in rows:
        spread = f"{fmt(r.get('spread_ms_p50'))} / {fmt(r.get('spread_ms_p99'))}"
        table.append([
            r["server"], str(r["target_clients"]), fmt(r.get("connected"), "{:.0f}"),
            fmt(r.get("mb_per_s")), fmt(r.get("cpu_s_per_gb"), "{:.2f}"),
            fmt(r.get("steady_server_cpu_s_per_gb"), "{:.3f}"),
            fmt(r.get("cpu_s_per_media_gb"), "{:.2f}"),
            fmt(r.get("steady_server_cpu_s_per_media_gb"), "{:.3f}"),
            fmt(r.get("wire_per_media"), "{:.3f}"),
            fmt(r.get("rss_kib_per_client")), spread, fmt(r.get("fell_behind"), "{:.0f}"),
        ] + ([str(r["runs"])] if several else []))
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h)
              for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))

    if args.md:
        md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        md += ["| " + " | ".join(row) + " |" for row in table]
        dhead = ["server", "clients", "events", "payload MB", "seconds", "server CPU s",
                 "loadgen CPU s", "RSS base / connected / peak MiB", "latency p50 / p99 ms",
                 "gaps", "resets", "stalls", "failed", "disconnected"]
        md += ["", "Details:", "", "| " + " | ".join(dhead) + " |",
               "|" + "|".join("---" for _ in dhead) + "|"]
        for r in rows:
            mib = [r.get(k) for k in ("server_rss_base_kib", "server_rss_connected_kib",
                                      "server_rss_peak_kib")]
            md.append("| " + " | ".join([
                r["server"], str(r["target_clients"]), fmt(r.get("data_events")),
                fmt((r["payload_bytes"] / 1e6) if r.get("payload_bytes") else None),
                fmt(r.get("seconds")), fmt(r.get("server_cpu_s"), "{:.2f}"),
                fmt(r.get("loadgen_cpu_s"), "{:.2f}"),
                " / ".join(fmt(v / 1024 if v is not None else None) for v in mib),
                f"{fmt(r.get('latency_ms_p50'))} / {fmt(r.get('latency_ms_p99'))}",
                fmt(r.get("gaps")), fmt(r.get("resets")), fmt(r.get("stalls")),
                fmt(r.get("failed")),
                fmt(r.get("disconnected")),
            ]) + " |")
        with open(args.md, "w") as f:
            f.write("\n".join(md) + "\n")


def cmd_pids(args):
    print(args.pid)
    for child in children(args.pid):
        print(child)


def main():
    ap = argparse.ArgumentParser(description="measurement helper for benches/compare.sh")
    sub = ap.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run")
    run.add_argument("--server", required=True)
    run.add_argument("--clients", type=int, required=True)
    run.add_argument("--pids-file", required=True)
    run.add_argument("--out", required=True)
    run.add_argument("--loadgen-log", default=os.devnull)
    run.add_argument("--timeout", type=float, default=120)
    run.add_argument("loadgen", nargs=argparse.REMAINDER)
    table = sub.add_parser("table")
    table.add_argument("results")
    table.add_argument("--md")
    pids = sub.add_parser("pids")
    pids.add_argument("pid", type=int)
    args = ap.parse_args()
    if args.cmd == "run":
        if args.loadgen and args.loadgen[0] == "--":
            args.loadgen = args.loadgen[1:]
        if not args.loadgen:
            ap.error("run needs the load generator command after --")
        sys.exit(cmd_run(args))
    elif args.cmd == "table":
        cmd_table(args)
    else:
        cmd_pids(args)


if __name__ == "__main__":
    main()
