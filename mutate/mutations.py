"""The curated mutations: one per promise of the README's "How it works" and Security sections.

Each breaks one promise with the smallest change that does, and names the tests that must catch it
(pytest node ids). A snippet must occur exactly once in its file; when the code moves on, the check
in tests/test_mutation_list.py names the stale mutation so that it is updated with the code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    original: str  # exact text, found exactly once in the file
    replacement: str
    promise: str  # what the README promises that this breaks
    tests: tuple[str, ...]  # node ids of which at least one must fail


# Starting a workflow without awaiting it: the hand-over returns before Temporal holds anything.
_FIRE_AND_FORGET = "__import__('asyncio').get_running_loop().create_task("

_SIGNAL_SEND = """    await signal_outbound(
        client, OutboundStart(message_id=send.message_id, options=options), SIGNAL_SEND, stored,
        task_queue=task_queue, contact_secret=contact_secret,
        contact=str(stored.request.get("to") or "") or None, rpc_timeout=rpc_timeout)"""

_MEDIA_LOG = """    await log_access(request, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"],
                                         "sha256": row["sha256"],
                                         "range": as_storable(request.headers.get("Range", "")) or None})"""
_MEDIA_SERVE = """    store = deps_of(request).store
    if request.query.get("redirect") == "presigned" and (url := await store.presigned_url(
            row["storage_key"], 300, content_type=row["mime_type"], filename=media_filename(row))):
        raise web.HTTPFound(url)  # a backend without links (the filesystem) streams the bytes below
    return await send_media(request, store, row, partial=True, headers={"X-Content-SHA256": row["sha256"]})"""
_MEDIA_READ = _MEDIA_LOG + "\n" + _MEDIA_SERVE
# The same read with the access-log write moved after the bytes were sent.
_MEDIA_READ_LOGGED_AFTER = (_MEDIA_SERVE.replace("    return await send_media(", "    sent = await send_media(")
                            + "\n" + _MEDIA_LOG + "\n    return sent")

_PAGE_MEDIA_READ = """    await _log(request, session, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"]})
    return await send_media(request, deps_of(request).store, row, partial=False,
                            headers={"Cache-Control": "private, no-store"})"""
_PAGE_MEDIA_READ_LOGGED_AFTER = """    sent = await send_media(request, deps_of(request).store, row, partial=False,
                            headers={"Cache-Control": "private, no-store"})
    await _log(request, session, "media", {"media": str(row["archive_id"]), "message_id": row["message_id"]})
    return sent"""

MUTATIONS: list[Mutation] = [
    # --- Nothing acknowledged is lost: 200 only once PostgreSQL and Temporal hold it ---------------
    Mutation(
        name="inline-fanout-fire-and-forget",
        file="wa_archive/archive/handover.py",
        original="    await start_messages(client, parsed, skip, options=options, outbound=outbound, task_queue=task_queue,\n"
                 "                         contact_secret=contact_secret, rpc_timeout=rpc_timeout, signal_statuses=signal_statuses)",
        replacement=f"    {_FIRE_AND_FORGET}start_messages(client, parsed, skip, options=options, outbound=outbound,"
                    " task_queue=task_queue,\n"
                    "                         contact_secret=contact_secret, rpc_timeout=rpc_timeout,"
                    " signal_statuses=signal_statuses))",
        promise="a small delivery is acknowledged only once Temporal holds every message's workflow",
        tests=("tests/test_webhook.py::test_temporal_unreachable_answers_503_and_meta_will_retry",
               "tests/test_faults.py::test_temporal_outage_answers_503_then_the_redelivery_is_archived"),
    ),
    Mutation(
        name="large-delivery-start-fire-and-forget",
        file="wa_archive/archive/handover.py",
        original="        await start_ingest_delivery(client, delivery.sha256, task_queue=task_queue, rpc_timeout=rpc_timeout)",
        replacement=f"        {_FIRE_AND_FORGET}start_ingest_delivery(client, delivery.sha256, task_queue=task_queue,"
                    " rpc_timeout=rpc_timeout))",
        promise="200 only once Temporal holds the large delivery's IngestDelivery workflow",
        tests=("tests/test_handover_outage.py::test_large_delivery_during_outage_answers_503_then_the_redelivery_is_archived",),
    ),
    Mutation(
        name="large-delivery-fanned-out-inline",
        file="webhook/meta.py",
        original="    if updates > settings.inline_fanout_max:",
        replacement="    if False:",
        promise="a delivery above WA_ARCHIVE_INLINE_FANOUT_MAX is acknowledged as one IngestDelivery start",
        tests=("tests/test_webhook.py::test_a_1000_update_batch_is_acknowledged_and_every_message_archived",),
    ),
    Mutation(
        name="outbound-signal-fire-and-forget",
        file="wa_archive/archive/handover.py",
        original=_SIGNAL_SEND,
        replacement=_SIGNAL_SEND.replace("await signal_outbound(", _FIRE_AND_FORGET + "signal_outbound(") + ")",
        promise="the record API and the send proxy answer 200 only once the OutboundMessage workflow holds the send",
        tests=("tests/test_handover_outage.py::test_record_api_during_outage_answers_503_then_the_retry_is_archived",
               "tests/test_handover_outage.py::test_send_proxy_during_outage_answers_503_with_the_wamid_and_it_is_recorded_later"),
    ),
    Mutation(
        name="intake-acknowledges-a-failed-handover",
        file="webhook/intake.py",
        original='            return json_error(503, "archive temporarily unavailable; retry later")',
        replacement='            return web.json_response({"status": "accepted", "delivery": delivery.sha256})',
        promise="any failure on the way to durability answers 503, so the sender retries",
        tests=("tests/test_webhook.py::test_temporal_unreachable_answers_503_and_meta_will_retry",),
    ),
    Mutation(
        name="redrive-finds-nothing",
        file="wa_archive/db/handoffs.py",
        original='" AND NOT EXISTS (SELECT 1 FROM delivery_handoffs h WHERE h.delivery_sha256 = d.sha256)"',
        replacement='" AND false"',
        promise="a delivery stored but never handed over (a 503) is handed to Temporal by the Redrive workflow",
        tests=("tests/test_redrive.py::test_a_delivery_stored_while_temporal_was_down_is_archived_without_redelivery",),
    ),
    # --- Signatures and secrets ------------------------------------------------------------------
    Mutation(
        name="meta-signature-not-checked",
        file="wa_archive/sources/signature.py",
        original="    return hmac.compare_digest(hmac.new(app_secret.encode(), body, hashlib.sha256).digest(), given)",
        replacement="    return True",
        promise="a Meta delivery is believed only with a valid X-Hub-Signature-256 over its exact bytes",
        tests=("tests/test_signature.py::TestSignature::test_valid_and_invalid",
               "tests/test_webhook.py::test_bad_or_missing_signature_is_401_and_starts_nothing"),
    ),
    Mutation(
        name="wasender-secret-not-checked",
        file="wa_archive/sources/signature.py",
        original='    return hmac.compare_digest(header.encode("utf-8", "surrogateescape"), secret.encode())',
        replacement="    return True",
        promise="a WASender delivery is believed only with the configured webhook secret",
        tests=("tests/test_wasender.py::test_bad_requests_are_refused_and_nothing_is_stored",),
    ),
    Mutation(
        name="wasender-media-mac-not-checked",
        file="wa_archive/sources/wasender/media.py",
        original="    if len(tail) < MAC_LENGTH or not hmac.compare_digest(mac.digest()[:MAC_LENGTH], tail):",
        replacement="    if len(tail) < MAC_LENGTH:",
        promise="WhatsApp's encrypted media is stored only when its MAC verifies",
        tests=("tests/test_wasender.py::test_hkdf_and_decryption_match_an_independent_computation",),
    ),
    # --- What is stored is what was sent -------------------------------------------------------------
    Mutation(
        name="provider-hash-not-compared",
        file="wa_archive/storage/base.py",
        original="    if expected is not None and digest != expected:",
        replacement="    if False:",
        promise="bytes are compared with the provider's SHA-256 before the object is committed",
        tests=("tests/test_storage.py::test_hash_mismatch_leaves_nothing_visible",
               "tests/test_archive.py::test_provider_hash_mismatch_is_never_recorded_as_good"),
    ),
    Mutation(
        name="filesystem-object-overwritten",
        file="wa_archive/storage/filesystem.py",
        original="            os.link(tmp, final)  # atomic, and fails instead of replacing an existing object",
        replacement="            os.replace(tmp, final)",
        promise="objects are write-once: different bytes under an existing key never replace it",
        tests=("tests/test_storage.py::test_identical_bytes_succeed_and_different_bytes_never_overwrite",),
    ),
    Mutation(
        name="filesystem-disk-error-not-retryable",
        file="wa_archive/storage/filesystem.py",
        original='            raise StorageError(f"cannot write {key} to the filesystem store: {exc}") from exc',
        replacement="            raise",
        promise="a full disk is a retryable error that leaves no object without its retention metadata",
        tests=("tests/test_storage.py::test_a_full_disk_is_a_retryable_error_and_never_an_object_without_its_metadata",),
    ),
    Mutation(
        name="s3-concurrent-identical-write-conflicts",
        file="wa_archive/storage/s3.py",
        original="                return await self._settle_race(key, digest, size)\n            raise",
        replacement='                raise StorageConflict(f"{key} was written concurrently") from exc\n            raise',
        promise="two attempts writing identical bytes at once make one object, never a critical failure",
        tests=("tests/test_storage.py::test_two_writers_of_identical_bytes_at_once_both_succeed_with_one_object",),
    ),
    # --- Every failure is visible --------------------------------------------------------------------
    Mutation(
        name="media-retries-unlimited",
        file="workflows/retries.py",
        original="        maximum_attempts=opts.retry_max_attempts,",
        replacement="        maximum_attempts=0,",
        promise="media is attempted WA_ARCHIVE_RETRY_MAX_ATTEMPTS times, then a critical failure is recorded",
        tests=("tests/test_retries.py::test_media_policy_follows_the_options_and_refuses_what_no_retry_fixes",),
    ),
    Mutation(
        name="attempt-rows-not-written",
        file="wa_archive/db/queries.py",
        original='" http_status, workflow_id, run_id) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9"\n'
                 '        " WHERE NOT EXISTS (SELECT 1 FROM dispositions WHERE message_id = $1)",',
        replacement='" http_status, workflow_id, run_id) SELECT $1,$2,$3,$4,$5,$6,$7,$8,$9"\n'
                    '        " WHERE false",',
        promise="each failed attempt writes a row, so the failure row holds every attempt's time, error and status",
        tests=("tests/test_archive.py::test_404_five_times_records_a_critical_failure_with_every_attempt",),
    ),
    # --- At most one archive per message; object keys --------------------------------------------------
    Mutation(
        name="duplicate-evidence-recorded-twice",
        file="wa_archive/contacts/consent.py",
        original="    if existing is not None:\n        return existing, False",
        replacement="    if False:\n        return existing, False",
        promise="the same consent evidence seen twice (a redelivery) is one entry",
        tests=("tests/test_consent_log.py::test_recording_the_same_evidence_twice_is_one_entry_with_one_leaf",),
    ),
    Mutation(
        name="object-key-dated-by-archiving",
        file="wa_archive/archive/keys.py",
        original='        f"archive/{ts:%Y/%m/%d}/{safe_id(contact)}/"',
        replacement='        f"archive/{datetime.now(timezone.utc):%Y/%m/%d}/{safe_id(contact)}/"',
        promise="object keys are dated by the message time in UTC",
        tests=("tests/test_archive_keys.py::TestKeys::test_key_uses_message_time_in_utc_and_mime_extension",),
    ),
    # --- Access logging: recorded before anything is read out ------------------------------------------
    Mutation(
        name="search-not-access-logged",
        file="webhook/api.py",
        original='    items, cursor = await log_access_during(request, "search", dict(request.query), _page(pool_of(request), filters))\n',
        replacement="    items, cursor = await _page(pool_of(request), filters)\n",
        promise="every search is written to the access log",
        tests=("tests/test_api.py::test_every_read_is_in_the_append_only_access_log",),
    ),
    Mutation(
        name="media-access-logged-after-the-bytes",
        file="webhook/api.py",
        original=_MEDIA_READ,
        replacement=_MEDIA_READ_LOGGED_AFTER,
        promise="a media read is access-logged before any byte is streamed",
        tests=("tests/test_access_before_data.py::test_api_media_read_is_refused_with_503_when_its_access_cannot_be_recorded",),
    ),
    Mutation(
        name="page-media-access-logged-after-the-bytes",
        file="webhook/ui.py",
        original=_PAGE_MEDIA_READ,
        replacement=_PAGE_MEDIA_READ_LOGGED_AFTER,
        promise="a media read through the pages is access-logged before any byte is streamed",
        tests=("tests/test_access_before_data.py::test_page_media_read_is_refused_with_503_when_its_access_cannot_be_recorded",),
    ),
    Mutation(
        name="access-log-failure-swallowed",
        file="webhook/deps.py",
        original='        raise web.HTTPServiceUnavailable(text=json.dumps({"error": message}),\n'
                 '                                         content_type="application/json") from exc',
        replacement="        return",
        promise="a read whose access cannot be recorded is refused, never served unrecorded",
        tests=("tests/test_access_before_data.py::test_api_media_read_is_refused_with_503_when_its_access_cannot_be_recorded",),
    ),
    Mutation(
        name="access-log-failure-answers-500",
        file="webhook/deps.py",
        original='        raise web.HTTPServiceUnavailable(text=json.dumps({"error": message}),\n'
                 '                                         content_type="application/json") from exc',
        replacement="        raise",
        promise="an unrecordable read is refused with 503 (retry later), not a 500",
        tests=("tests/test_access_before_data.py::test_api_media_read_is_refused_with_503_when_its_access_cannot_be_recorded",),
    ),
    Mutation(
        name="read-sent-though-its-access-failed",
        file="webhook/deps.py",
        original="    except BaseException:\n        reading.cancel()\n",
        replacement="    except BaseException:\n        return await reading\n",
        promise="a read that runs while its access entry commits is sent only once the entry committed",
        tests=("tests/test_access_before_data.py::test_api_media_read_is_refused_with_503_when_its_access_cannot_be_recorded",),
    ),
    Mutation(
        name="access-log-not-append-only",
        file="wa_archive/db/migrations/003_access.sql",
        original="    RAISE EXCEPTION 'access_log is append-only: % refused', TG_OP;",
        replacement="    RETURN NULL;",
        promise="the access log refuses UPDATE, DELETE and TRUNCATE, to its owner too",
        tests=("tests/test_api.py::test_every_read_is_in_the_append_only_access_log",),
    ),
    Mutation(
        name="codec-decode-not-access-logged",
        file="webhook/codec.py",
        original="    try:\n        await access_log.record_access(pool_of(request), actor=caller.name, role=caller.role, action=action,",
        replacement="    try:\n        return None\n        await access_log.record_access(pool_of(request), actor=caller.name, role=caller.role,"
                    " action=action,",
        promise="decoding a Temporal payload is an access-logged read, naming the workflows",
        tests=("tests/test_codec_server.py::test_an_operator_token_decodes_and_the_access_log_names_who_read_which_workflow",),
    ),
    # --- The ledger ------------------------------------------------------------------------------------
    Mutation(
        name="message-without-ledger-leaf",
        file="wa_archive/archive/writes.py",
        original="        await ledger.append_message(conn, message_id)\n        # Who the other party was",
        replacement="        # Who the other party was",
        promise="every message appends its ledger leaf in the same transaction as its record",
        tests=("tests/test_ledger.py::test_untouched_archive_verifies_and_each_tampering_is_named",),
    ),
    Mutation(
        name="inclusion-proof-root-not-compared",
        file="wa_archive/integrity/merkle.py",
        original="    return sn == 0 and r == expected_root",
        replacement="    return sn == 0",
        promise="an inclusion proof verifies only against the signed root",
        tests=("tests/test_merkle.py::test_every_inclusion_proof_verifies_and_wrong_ones_do_not",),
    ),
    Mutation(
        name="consistency-proof-old-root-not-compared",
        file="wa_archive/integrity/merkle.py",
        original="    return sn == 0 and fr == root_m and sr == root_n",
        replacement="    return sn == 0 and sr == root_n",
        promise="a checkpoint must extend the previous one: a rewritten history fails the consistency proof",
        tests=("tests/test_merkle.py::test_every_consistency_proof_verifies_and_a_rewritten_history_does_not",),
    ),
    Mutation(
        name="checkpoint-signature-not-verified",
        file="wa_archive/integrity/ledger.py",
        original="        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)",
        replacement="        Ed25519PublicKey.from_public_bytes(public_key)",
        promise="proofs are checked against a key from outside: a receipt re-signed with another key fails",
        tests=("tests/test_proofs.py::test_a_receipt_resigned_with_a_fresh_key_needs_and_fails_the_trusted_key",),
    ),
    # --- Retention, legal hold, disposition ------------------------------------------------------------
    Mutation(
        name="due-list-ignores-retention",
        file="wa_archive/retention/disposition.py",
        original="WHERE m.retain_until <= now() AND cardinality(m.hold_cases) = 0",
        replacement="WHERE cardinality(m.hold_cases) = 0",
        promise="disposition lists only messages past their retain-until",
        tests=("tests/test_disposition_checks.py::test_due_list_leaves_out_what_is_within_retention_or_on_hold",),
    ),
    Mutation(
        name="due-list-ignores-hold",
        file="wa_archive/retention/disposition.py",
        original="WHERE m.retain_until <= now() AND cardinality(m.hold_cases) = 0",
        replacement="WHERE m.retain_until <= now()",
        promise="disposition never lists a message on legal hold",
        tests=("tests/test_disposition_checks.py::test_due_list_leaves_out_what_is_within_retention_or_on_hold",),
    ),
    Mutation(
        name="dispose-message-ignores-retention",
        file="wa_archive/retention/disposition.py",
        original='            if row["retain_until"] is None or row["retain_until"] > now:',
        replacement='            if row["retain_until"] is None:',
        promise="dispose_message refuses a message within retention by its own check",
        tests=("tests/test_disposition_checks.py::test_dispose_message_refuses_what_is_within_retention_or_on_hold",),
    ),
    Mutation(
        name="dispose-message-ignores-hold",
        file="wa_archive/retention/disposition.py",
        original='            if row["hold_cases"]:',
        replacement="            if False:",
        promise="dispose_message refuses a message on legal hold by its own check",
        tests=("tests/test_disposition_checks.py::test_dispose_message_refuses_what_is_within_retention_or_on_hold",),
    ),
    # --- Roles ---------------------------------------------------------------------------------------
    Mutation(
        name="application-role-may-insert-ledger-leaves",
        file="wa_archive/db/roles.py",
        original='NOT_INSERTABLE = frozenset({"ledger_head", "ledger_leaves", "ledger_candidates", "dispositions", "ledger_tiles",',
        replacement='NOT_INSERTABLE = frozenset({"ledger_head", "ledger_candidates", "dispositions", "ledger_tiles",',
        promise="the application appends ledger leaves only through ledger_append(), never by INSERT",
        tests=("tests/test_db_roles.py::test_the_application_role_appends_to_the_ledger_only_through_the_owners_function",),
    ),
    # --- Temporal: holds no readable message, is never a source of messages -------------------------
    Mutation(
        name="payload-codec-passes-plaintext",
        file="wa_archive/temporal/codec.py",
        original="            encoded.append(Payload(metadata=metadata, data=nonce + sealed))",
        replacement="            encoded.append(payload)",
        promise="every payload handed to Temporal is encrypted with AES-256-GCM",
        tests=("tests/test_payload_codec.py::test_round_trip_seals_data_and_metadata_under_a_fresh_nonce",),
    ),
    Mutation(
        name="message-not-compared-with-its-delivery",
        file="wa_archive/archive/provenance.py",
        original="    if given not in candidates:",
        replacement="    if False:",
        promise="the worker records an inbound message only when it equals what the stored delivery builds",
        tests=("tests/test_temporal_trust.py::test_a_real_message_handed_over_with_other_content_is_refused",),
    ),
    # --- Contacts and consent ------------------------------------------------------------------------
    Mutation(
        name="consent-log-not-append-only",
        file="wa_archive/db/migrations/016_contacts_consent.sql",
        original="CREATE TRIGGER consent_entries_append_only BEFORE UPDATE OR DELETE ON consent_entries\n"
                 "    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();",
        replacement="CREATE TRIGGER consent_entries_append_only BEFORE TRUNCATE ON consent_entries\n"
                    "    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();",
        promise="the consent log is append-only: an entry is never changed or deleted",
        tests=("tests/test_append_only_evidence.py::test_consent_entries_contacts_and_their_links_refuse_change_even_to_the_owner",),
    ),
    Mutation(
        name="contact-links-not-append-only",
        file="wa_archive/db/migrations/016_contacts_consent.sql",
        original="CREATE TRIGGER contact_links_append_only BEFORE UPDATE OR DELETE ON contact_links\n"
                 "    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();",
        replacement="CREATE TRIGGER contact_links_append_only BEFORE TRUNCATE ON contact_links\n"
                    "    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();",
        promise="who held a number is history: contact links are never rewritten",
        tests=("tests/test_append_only_evidence.py::test_consent_entries_contacts_and_their_links_refuse_change_even_to_the_owner",),
    ),
    Mutation(
        name="contacts-not-append-only",
        file="wa_archive/db/migrations/016_contacts_consent.sql",
        original="CREATE TRIGGER contacts_append_only BEFORE UPDATE OR DELETE ON contacts\n"
                 "    FOR EACH ROW EXECUTE FUNCTION ledger_append_only();",
        replacement="CREATE TRIGGER contacts_append_only BEFORE TRUNCATE ON contacts\n"
                    "    FOR EACH STATEMENT EXECUTE FUNCTION ledger_append_only();",
        promise="a contact, once made, is never changed or removed (its history stays with it)",
        tests=("tests/test_append_only_evidence.py::test_consent_entries_contacts_and_their_links_refuse_change_even_to_the_owner",),
    ),
    # --- Metrics labels and logs ---------------------------------------------------------------------
    Mutation(
        name="sdk-metric-labels-unbounded",
        file="wa_archive/observability/temporal_sdk.py",
        original="    return value if allowed is None or value in allowed else OTHER",
        replacement="    return value",
        promise="metric label values come from closed sets: an unregistered workflow type is 'other'",
        tests=("tests/test_ops_attacks.py::test_a_workflow_type_anyone_can_start_does_not_become_a_metric_label",),
    ),
    Mutation(
        name="delivery-metric-labels-unbounded",
        file="wa_archive/observability/metrics.py",
        original="    return value if value in allowed else OTHER",
        replacement="    return value",
        promise="a sender cannot create metric series: label values outside the closed set are 'other'",
        tests=("tests/test_metrics.py::test_delivery_labels_outside_their_closed_sets_are_counted_as_other",),
    ),
    Mutation(
        name="sensitive-log-fields-kept",
        file="wa_archive/logs.py",
        original="            event[key] = REDACTED\n",
        replacement="            pass\n",
        promise="fields named like a phone, text, body, token, key, secret or payload are logged as [redacted]",
        tests=("tests/test_logs.py::test_fields_named_like_customer_data_or_secrets_are_redacted_whatever_their_value",),
    ),
    Mutation(
        name="phone-like-numbers-kept-in-free-text",
        file="wa_archive/logs.py",
        original='    return _PHONE_LIKE.sub(_phone_or_kept, _QUERY.sub("?" + REDACTED, text))',
        replacement='    return _QUERY.sub("?" + REDACTED, text)',
        promise="libraries' free text loses any phone number, written as a run of 7-15 digits or grouped",
        tests=("tests/test_logs.py::test_scrub_drops_query_strings_and_phone_like_numbers_but_keeps_digests",
               "tests/test_logs.py::test_scrub_drops_phone_numbers_written_with_spaces_dashes_and_brackets"),
    ),
    Mutation(
        name="access-line-logs-the-path",
        file="wa_archive/logs.py",
        original="            route = match_info.route.resource.canonical",
        replacement="            route = request.path",
        promise="the HTTP access line names the matched route pattern, never the path a client sent",
        tests=("tests/test_logs.py::test_serve_logs_json_lines_with_routes_not_paths_or_queries",),
    ),
    # --- Every byte from WhatsApp is an attacker's -----------------------------------------------------
    Mutation(
        name="internal-ipv4-fetched",
        file="wa_archive/sources/links.py",
        original="        return not ip.is_global or ip.is_multicast",
        replacement="        return ip.is_multicast",
        promise="media links reach only globally routable unicast addresses (SSRF guard)",
        tests=("tests/test_graph_guard.py::test_forbidden_refuses_everything_not_globally_routable",
               "tests/test_links.py::TestLinkGuard::test_names_resolving_to_internal_addresses_are_refused"),
    ),
    Mutation(
        name="token-sent-to-any-media-host",
        file="wa_archive/sources/meta/graph.py",
        original="        target = self.media_hosts.check(url)",
        replacement="        target = url",
        promise="the access token goes only to the Graph origin and WA_ARCHIVE_META_MEDIA_HOSTS",
        tests=("tests/test_graph_guard.py::test_media_metadata_naming_a_foreign_host_never_gets_the_token",),
    ),
    Mutation(
        name="media-served-without-sandbox",
        file="wa_archive/archive/media_types.py",
        original='        "Content-Security-Policy": MEDIA_CSP,\n',
        replacement="",
        promise="media is served with Content-Security-Policy: sandbox, so no archived byte runs",
        tests=("tests/test_media_safety.py::test_hostile_declared_types_are_normalised_stored_and_served_as_attachments",),
    ),
    Mutation(
        name="media-always-inline",
        file="wa_archive/archive/media_types.py",
        original='    disposition = "inline" if inline_allowed and served in INLINE_TYPES else "attachment"',
        replacement='    disposition = "inline"',
        promise="media leaves as an attachment unless its type is on the inline allow-list",
        tests=("tests/test_media_safety.py::test_hostile_declared_types_are_normalised_stored_and_served_as_attachments",),
    ),
    Mutation(
        name="csv-formula-cells-kept",
        file="wa_archive/discovery/export.py",
        original="    if isinstance(value, str) and value.startswith(_FORMULA_START):",
        replacement="    if False:",
        promise="messages.csv cells a spreadsheet would evaluate get a leading quote",
        tests=("tests/test_media_safety.py::test_csv_cells_never_start_a_formula",),
    ),
    Mutation(
        name="unstorable-text-not-substituted",
        file="wa_archive/json_input.py",
        original="    if storable_text(value):\n        return value\n    return SubstitutedText(",
        replacement="    if True:\n        return value\n    return SubstitutedText(",
        promise="NUL and lone surrogates are replaced by U+FFFD and the message flagged text_substituted",
        tests=("tests/test_unstorable_text.py::test_nul_and_lone_surrogates_become_the_replacement_character_and_are_marked",),
    ),
    # --- Auditors' own reads: refusals logged, receipts and the access log logged first -------------------
    Mutation(
        name="refused-token-not-logged",
        file="webhook/auth.py",
        original='                await note_refusal(request, "invalid_token")\n',
        replacement="",
        promise="a request with an unknown or revoked token is an access-log entry marked refused",
        tests=("tests/test_auditor_access.py::test_access_log_api_is_for_auditors_and_admins_and_refusals_are_logged",),
    ),
    Mutation(
        name="token-memory-keeps-an-answer-that-crossed-a-change",
        file="wa_archive/access/token_cache.py",
        original="        elif self._listening and changes == self._changes and self.enabled:",
        replacement="        elif self._listening and self.enabled:",
        promise="an API token's answer read before a revocation was heard of is never remembered",
        tests=("tests/test_token_cache.py::test_an_answer_read_before_a_change_is_not_kept",),
    ),
    Mutation(
        name="token-memory-deaf-to-changes",
        file="wa_archive/access/token_cache.py",
        original="            return\n        self.forget_all()\n",
        replacement="            return\n",
        promise="a revoked or demoted API token is refused at once, even when the server remembered it",
        tests=("tests/test_token_cache.py::test_a_token_revoked_with_the_cli_is_refused_at_once",
               "tests/test_token_cache.py::test_an_insiders_own_sql_on_the_tokens_is_heard_too"),
    ),
    Mutation(
        name="token-memory-trusts-a-listener-it-never-heard",
        file="wa_archive/access/token_cache.py",
        original="        beat = BEAT + secrets.token_hex(8)\n",
        replacement="        return str(state['version'])\n        beat = BEAT + secrets.token_hex(8)\n",
        promise="a listening connection that notifications do not reach (a pooler, a former primary) is never trusted",
        tests=("tests/test_token_cache.py::test_a_listener_that_notifications_do_not_reach_is_never_trusted",),
    ),
    Mutation(
        name="token-memory-blind-to-a-switched-off-announcement",
        file="wa_archive/access/token_cache.py",
        original="        if announced is not None and state[\"version\"] != announced:",
        replacement="        if False:",
        promise="an owner who disables the announcing trigger around a change is caught at the next heartbeat",
        tests=("tests/test_token_cache.py::test_an_owner_who_switches_the_announcement_off_around_a_change_is_caught",),
    ),
    Mutation(
        name="verify-blind-to-a-changed-tile",
        file="wa_archive/integrity/log_check.py",
        original="            if stored is not None and merkle.root(self._block) != stored:",
        replacement="            if False:",
        promise="a ledger tile changed behind the archive's back is named by verify",
        tests=("tests/test_ledger_tiles.py::test_verify_names_a_tile_a_superuser_changed",),
    ),
    Mutation(
        name="paged-verify-blind-to-deleted-records",
        file="wa_archive/integrity/verification.py",
        original='        removed(leaf["record_id"], pending.get((kind, leaf["record_id"]), leaf["digest"]))',
        replacement="        pass",
        promise="verify, reading by pages, still names a record deleted while its leaf remains",
        tests=("tests/test_verify_streaming.py::test_tampering_in_different_pages_is_named_as_when_read_whole",),
    ),
    Mutation(
        name="compact-range-merges-unequal-subtrees",
        file="wa_archive/integrity/merkle.py",
        original="        while self._subtrees and self._subtrees[-1][0] == count:",
        replacement="        while self._subtrees:",
        promise="the root verify takes as the leaves stream past is the RFC 6962 root at every size",
        tests=("tests/test_verify_streaming.py::test_the_compact_range_gives_the_tree_root_at_every_size",),
    ),
    Mutation(
        name="refusal-flood-not-bounded",
        file="wa_archive/access/refusals.py",
        original="        if key in self._seen or (key[0] == OTHER_SOURCES and refusal.actor == UNKNOWN_ACTOR):",
        replacement="        if False:",
        promise="refusals repeated within a minute are counted into one entry, not each written",
        tests=("tests/test_auditor_access.py::test_a_flood_of_refusals_writes_one_entry_per_source_and_reason_a_minute",),
    ),
    Mutation(
        name="receipt-not-access-logged",
        file="webhook/audit_api.py",
        original='    await log_access(request, "receipt", {"message_id": message_id})\n',
        replacement="",
        promise="a receipt taken through the API is written to the access log",
        tests=("tests/test_auditor_access.py::test_a_receipt_from_the_api_and_the_page_verifies_offline",),
    ),
    Mutation(
        name="integrator-run-on-a-dead-worker-waits-its-whole-timeout",
        file="workflows/ledger_integrate.py",
        original="                heartbeat_timeout=LEDGER_RUN_HEARTBEAT, retry_policy=INTEGRATE_UNTIL_RETRY)",
        replacement="                retry_policy=INTEGRATE_UNTIL_RETRY)",
        promise="a worker killed in the middle of integrating stalls the ledger for seconds, not minutes",
        tests=("tests/test_faults.py::test_a_worker_killed_mid_integration_is_noticed_within_seconds_and_another_takes_over",),
    ),
    Mutation(
        name="filesystem-temp-file-visible-before-it-is-locked",
        file="wa_archive/storage/filesystem.py",
        original='    fresh = directory / f"{name}{FRESH_SUFFIX}"\n',
        replacement='    fresh = directory / f"{name}.part"\n',
        promise="a timed-out attempt writing beside its retry never loses its temp file to the retry's sweep",
        tests=("tests/test_storage.py::test_a_temp_file_is_never_swept_as_abandoned_while_its_writer_lives",),
    ),
    Mutation(
        name="s3-upload-created-for-a-cancelled-attempt-left-behind",
        file="wa_archive/storage/s3.py",
        original="            created = await asyncio.shield(creating)\n",
        replacement="            created = await creating\n",
        promise="an attempt cancelled while its upload is being created leaves no incomplete upload behind",
        tests=("tests/test_storage.py::"
               "test_an_attempt_cancelled_while_creating_its_upload_aborts_the_upload_the_store_creates",),
    ),
    Mutation(
        name="ledger-candidate-too-large-for-the-log",
        file="wa_archive/db/migrations/025_integrator_unstallable.sql",
        original="    CHECK (octet_length(record_id) <= 1024 AND octet_length(digest) <= 128);",
        replacement="    CHECK (true);",
        promise="no candidate the application role can commit makes every later integration fail",
        tests=("tests/test_ledger_attacks.py::"
               "test_a_candidate_too_large_for_the_log_fails_its_own_transaction_not_the_integrator",),
    ),
    Mutation(
        name="tile-writer-waits-on-a-lock-anyone-can-hold",
        file="wa_archive/db/migrations/025_integrator_unstallable.sql",
        original="'LOCK TABLE ledger_tiles IN SHARE ROW EXCLUSIVE MODE;  -- one writer at a time (migration 025)'",
        replacement="'PERFORM pg_advisory_xact_lock(2003266420);'",
        promise="no lock a session of the application role holds makes integration or a checkpoint wait",
        tests=("tests/test_ledger_attacks.py::"
               "test_no_lock_the_application_role_can_hold_stalls_integration_or_a_checkpoint",),
    ),
    Mutation(
        name="integration-call-without-a-bound",
        file="wa_archive/integrity/sequencing.py",
        original="    for _ in range(INTEGRATE_BATCHES_PER_CALL):\n",
        replacement="    while True:\n",
        promise="a flood of candidates cannot keep a checkpoint from being signed",
        tests=("tests/test_ledger_attacks.py::test_a_flood_of_candidates_cannot_keep_a_checkpoint_from_being_signed",),
    ),
    Mutation(
        name="token-memory-blind-to-a-silenced-announcing-function",
        file="wa_archive/access/token_cache.py",
        original="t.xmin::text || '/' || p.xmin::text AS version",
        replacement="t.xmin::text AS version",
        promise="an owner who silences the announcing trigger's function around a change is caught at the next heartbeat",
        tests=("tests/test_token_cache.py::"
               "test_an_owner_who_silences_the_announcing_function_around_a_change_is_caught",),
    ),
    Mutation(
        name="integrator-deaf-to-its-worker-stopping",
        file="activities/ledger.py",
        original="                                                    activity.wait_for_worker_shutdown)",
        replacement="                                                    __import__('asyncio').Event().wait)",
        promise="a worker shut down mid-run hands the rest of the integrator's run to another at once",
        tests=("tests/test_ledger_integrator.py::test_when_its_worker_stops_another_worker_takes_the_rest_of_the_run",),
    ),
    Mutation(
        name="schedules-apply-leaves-the-integrator-minutes-away",
        file="wa_archive/temporal/schedules.py",
        original="            await start_integrating(client)\n",
        replacement="            pass\n",
        promise="`schedules apply` starts integrating at once, not at the Schedule's next start",
        tests=("tests/test_ledger_integrator.py::test_schedules_apply_starts_integrating_at_once",),
    ),
    Mutation(
        name="integrator-run-loops-on-a-worker-clock-ahead",
        file="workflows/ledger_integrate.py",
        original="    return done.worker_stopping and left > every",
        replacement="    return left > every",
        promise="a worker whose clock runs ahead ends a run of the integrator early, not in a loop of activities",
        tests=("tests/test_ledger_integrator.py::"
               "test_a_run_asks_for_another_activity_only_after_a_worker_stopped_and_with_time_left",),
    ),
    Mutation(
        name="ledger-held-up-by-an-idle-transaction-for-ever",
        file="wa_archive/db/stalls.py",
        original="            THEN pg_terminate_backend(a.pid) ELSE false END AS ended",
        replacement="            THEN false ELSE false END AS ended",
        promise="no transaction the application role keeps open holds the integrator, tiles or a checkpoint up for long",
        tests=("tests/test_ledger_attacks.py::"
               "test_a_transaction_the_application_role_keeps_open_cannot_hold_the_integrator_up",),
    ),
    Mutation(
        name="checkpoint-rows-taken-unsigned",
        file="wa_archive/integrity/checkpoints.py",
        original="                if signed_by(row, public_key):\n",
        replacement="                if True:\n",
        promise="receipts and gauges use only checkpoint rows signed with the ledger key",
        tests=("tests/test_checkpoint_forgery.py::test_a_checkpoint_row_the_archive_did_not_sign_is_passed_over",),
    ),
    Mutation(
        name="checkpoint-row-beyond-the-log-accepted",
        file="wa_archive/db/migrations/026_checkpoints_within_the_log.sql",
        original="OR NEW.tree_size > integrated THEN",
        replacement="THEN",
        promise="no checkpoint row may cover a leaf that is not integrated",
        tests=("tests/test_checkpoint_forgery.py::"
               "test_the_application_role_cannot_record_a_checkpoint_beyond_the_integrated_log",),
    ),
    Mutation(
        name="page-fails-after-a-media-column-is-added",
        file="wa_archive/discovery/search.py",
        original="        except asyncpg.OutdatedSchemaCacheError:",
        replacement="        except ZeroDivisionError:",
        promise="a migration adding a column beside running servers fails no page",
        tests=("tests/test_schema_change_while_serving.py::"
               "test_a_page_is_read_whole_after_a_column_is_added_to_media_while_serving",),
    ),
    Mutation(
        name="revoked-token-brought-back",
        file="wa_archive/db/migrations/027_revocation_is_final.sql",
        original="    IF OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN",
        replacement="    IF false THEN",
        promise="a revoked token stays revoked, whoever holds the application role's credentials",
        tests=("tests/test_db_roles.py::test_a_revoked_token_stays_revoked",),
    ),
]
