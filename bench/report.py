"""The tables `make bench` prints after a full run: every measurement against its baseline, then
the Temporal payload codec's cost on ingest and end to end (with the codec, as deployed, against
plaintext payloads in the same run) and the codec alone."""

from __future__ import annotations


def print_tables(results: dict) -> None:
    i, e, o, large = results["ingest"], results["end_to_end"], results["outbound"], results["large_file"]
    sp, sf = results["search"]["phone_30d"], results["search"]["full_text"]
    v, dp, em = results["verify_full"], results["disposition"], results["encrypted_media"]
    rc, cs = results["reconciliation"], results["consent"]
    lg = results["ledger"]
    rows = [
        ("ingest vs raw start_workflow", f"{i['webhook_per_s']}/s vs {i['raw_start_per_s']}/s", i["ratio"],
         ">= 0.85 every run"),
        ("ingest p50 / p99 at 100 req/s", f"{i['p50_ms_at_100rps']} / {i['p99_ms_at_100rps']} ms"
         + (f", {i['refused_at_100rps']} refused" if i["refused_at_100rps"] else ""), "", "p99 <= 100 ms"),
        ("raw start p50 / p99 at 100/s", f"{i['raw_start_p50_ms_at_100rps']} / {i['raw_start_p99_ms_at_100rps']} ms", "", "(baseline)"),
        ("ack of a 1,000-update delivery", f"{i['ack_1000_updates_ms']} ms", "", "<= 1000 ms"),
        ("end to end vs Temporal floor", f"{e['archive_msgs_per_s']}/s vs {e['floor_msgs_per_s']}/s", e["ratio"], ">= 0.7"),
        ("  end to end, worker metrics on vs off", f"{e['archive_msgs_per_s']}/s vs {e['no_metrics']['archive_msgs_per_s']}/s",
         e["metrics_cost"]["archive_msgs_per_s"]["ratio"], "(report)"),
        ("outbound templates vs inbound", f"{o['outbound_msgs_per_s']}/s vs {o['inbound_msgs_per_s']}/s", o["ratio"], "(report)"),
        ("search phone+30d p50/p95 API", f"{sp['api_p50_ms']} / {sp['api_p95_ms']} ms", "", "p95 <= 50 ms"),
        ("search phone+30d p95 direct SQL", f"{sp['direct_p95_ms']} ms", sp["api_overhead_p95"], "API +<= 30%"),
        ("API phone+30d p95 over SQL, 1M", f"{sp['api_minus_direct_p95_ms']:+} ms", sp["api_over_direct_p95"],
         "<= +1 ms"),
        ("  floors p50: HTTP / durable commit", f"{sp['http_floor_p50_ms']} / {sp['commit_floor_p50_ms']} ms", "",
         f"rest {sp['api_minus_floors_p50_ms']} ms"),
        ("full text p50/p95 API", f"{sf['api_p50_ms']} / {sf['api_p95_ms']} ms", "", "p95 <= 200 ms"),
        ("full text p95 direct SQL", f"{sf['direct_p95_ms']} ms", sf["api_overhead_p95"], "API +<= 30%"),
        ("verify --full 2 GiB vs sha256sum", f"{v['verify_mb_per_s']} vs {v['sha256sum_mb_per_s']} MB/s", v["ratio"], ">= 0.7"),
        ("disposition vs plain delete", f"{dp['disposition_msgs_per_s']}/s vs {dp['plain_msgs_per_s']}/s", dp["ratio"], "(report)"),
        ("512 MiB encrypted vs plain", f"{em['encrypted_wasender_s']} s vs {em['plain_graph_s']} s", em["ratio"], "(report)"),
        ("  worker RSS growth decrypting", f"{em['rss_growth_mib']} MiB", "", "<= 64 MiB"),
        ("1 GiB vs sha256sum + cp", f"{large['archive_s']} s vs {large['floor_hash_plus_copy_s']} s", large["ratio"], "<= 1.5"),
        ("1 GiB worker RSS growth", f"{large['rss_growth_mib']} MiB", "", "<= 64 MiB"),
        ("reconcile 1M-message day vs count(*)", f"{rc['reconcile_s']} s vs {rc['plain_count_s']} s", rc["ratio"],
         "(report)"),
        ("  worker peak RSS growth", f"{rc['worker_rss_growth_mib']} MiB", "", "(report)"),
        ("consent report 1M sends vs count(*)", f"{cs['report_s']} s vs {cs['plain_count_s']} s", cs["report_ratio"],
         "(report)"),
        ("send-time consent vs PK read p50", f"{cs['state_at_p50_ms']} vs {cs['pk_read_p50_ms']} ms",
         cs["state_at_ratio_p50"], "(report)"),
        ("ledger appends, 32 writers vs INSERT", f"{lg['ledger_append_per_s']}/s vs {lg['plain_insert_per_s']}/s",
         lg["ratio"], ">= 0.8"),
        ("integration lag p99 / interval", f"{lg['lag_p99_s']} s / {lg['interval_s']} s", lg["lag_p99_over_interval"],
         "<= 2"),
    ]
    print(f"\n{'measure':<34} {'measured':<28} {'ratio':<8} target")
    for row in rows:
        print(f"{row[0]:<34} {row[1]:<28} {str(row[2]):<8} {row[3]}")

    ip, ic, ep, ec = i["plaintext"], i["codec_cost"], e["plaintext"], e["codec_cost"]

    def per_item(cost: dict, unit: str) -> str:
        return f"{cost['ms_per_item']:+} ms/{unit}"

    def ms(cost: dict) -> str:
        return f"{cost['difference_ms']:+} ms"

    codec_rows = [
        ("ingest webhook deliveries/s", i["webhook_per_s"], ip["webhook_per_s"], ic["webhook_per_s"]["ratio"],
         per_item(ic["webhook_per_s"], "delivery")),
        ("ingest raw start_workflow/s", i["raw_start_per_s"], ip["raw_start_per_s"],
         ic["raw_start_per_s"]["ratio"], per_item(ic["raw_start_per_s"], "start")),
        ("  webhook / raw start", i["ratio"], ip["ratio"], "", ""),
        ("ingest p50 at 100 req/s (ms)", i["p50_ms_at_100rps"], ip["p50_ms_at_100rps"],
         ic["p50_ms_at_100rps"]["ratio"], ms(ic["p50_ms_at_100rps"])),
        ("ingest p99 at 100 req/s (ms)", i["p99_ms_at_100rps"], ip["p99_ms_at_100rps"],
         ic["p99_ms_at_100rps"]["ratio"], ms(ic["p99_ms_at_100rps"])),
        ("  refused at 100 req/s", i["refused_at_100rps"], ip["refused_at_100rps"], "", ""),
        ("raw start p99 at 100/s (ms)", i["raw_start_p99_ms_at_100rps"], ip["raw_start_p99_ms_at_100rps"],
         ic["raw_start_p99_ms_at_100rps"]["ratio"], ms(ic["raw_start_p99_ms_at_100rps"])),
        ("ack of 1,000 updates (ms)", i["ack_1000_updates_ms"], ip["ack_1000_updates_ms"],
         ic["ack_1000_updates_ms"]["ratio"], ms(ic["ack_1000_updates_ms"])),
        ("end to end messages/s", e["archive_msgs_per_s"], ep["archive_msgs_per_s"],
         ec["archive_msgs_per_s"]["ratio"], per_item(ec["archive_msgs_per_s"], "message")),
        ("Temporal floor messages/s", e["floor_msgs_per_s"], ep["floor_msgs_per_s"],
         ec["floor_msgs_per_s"]["ratio"], per_item(ec["floor_msgs_per_s"], "message")),
        ("  end to end / floor", e["ratio"], ep["ratio"], "", ""),
    ]
    for size, c in results["payload_codec"].items():
        codec_rows.append((f"converter, {size.replace('_kib', ' KiB')} payloads/s", c["encrypted_converter_per_s"],
                           c["plain_converter_per_s"], c["ratio"], f"codec alone {c['codec_us']} us"))
    print(f"\n{'Temporal payload codec, same run':<34} {'with codec':<12} {'plaintext':<12} {'ratio':<8} cost")
    for row in codec_rows:
        print(f"{row[0]:<34} {row[1]!s:<12} {row[2]!s:<12} {row[3]!s:<8} {row[4]}".rstrip())


def print_scale(results: dict) -> None:
    """The scale run's figures (bench/scale.py): each read with its p50/p95, the load and the sizes."""
    ld, q, ex, vf, rc = (results["load"], results["queries"], results["export_one_contact"],
                         results["verify_sample_1000"], results["reconciliation"])
    print(f"\nscale run: {ld['messages']:,} messages, {ld['media_rows']:,} media rows, {ld['contacts']:,} contacts")
    rows = [("load (COPY, media, leaves, indexes)", f"{ld['load_s']} s, {ld['load_msgs_per_s']:,} messages/s", ""),
            ("first checkpoint over the log", f"{results['checkpoint']['s']} s", "")]
    for key, label in (("phone_30d", "phone + 30 days"), ("full_text", "full text"),
                       ("conversation_page", "conversation page (50)")):
        f = q[key]
        target = f"p95 <= {f['target_p95_ms']} ms" if "target_p95_ms" in f else "(report)"
        rows.append((f"{label}, API p50 / p95", f"{f['api_p50_ms']} / {f['api_p95_ms']} ms", target))
        rows.append((f"{label}, SQL p50 / p95", f"{f['direct_p50_ms']} / {f['direct_p95_ms']} ms", target))
    rows += [
        ("export of one contact p50 / p95", f"{ex['p50_s']} / {ex['p95_s']} s ({ex['messages_per_export']} messages)",
         "(report)"),
        ("verify --sample 1000 p50 / p95", f"{vf['p50_s']} / {vf['p95_s']} s, peak RSS {vf['peak_rss_mib']} MiB"
         if vf["runs"] else f"not run: {vf['not_run']}", "(report)"),
        (f"reconcile a day of {rc['messages']:,}", f"{rc.get('reconcile_p50_s', rc['reconcile_s'])} / "
         f"{rc.get('reconcile_p95_s', rc['reconcile_s'])} s vs count(*) {rc['plain_count_s']} s", "(report)"),
        ("database size", f"{results['sizes']['database_mib']:,} MiB", ""),
    ]
    print(f"\n{'measure':<42} {'measured':<44} target")
    for label, measured, target in rows:
        print(f"{label:<42} {measured:<44} {target}".rstrip())
    print("\nlargest tables (MiB, with indexes / heap):",
          ", ".join(f"{k} {v['total']}/{v['heap']}" for k, v in results["sizes"]["tables_mib"].items()))
    print("largest indexes (MiB):", ", ".join(f"{k} {v}" for k, v in results["sizes"]["indexes_mib"].items()))
