"""Message templates: snapshots of what a template says (not its status), and rendering a send with it."""

from __future__ import annotations


class TestTemplates:
    def test_snapshot_ignores_status_and_quality(self):
        from wa_archive.sources.meta.templates import snapshot

        base = {"name": "t", "language": "en", "components": [{"type": "BODY", "text": "Hi {{1}}"}]}
        a = snapshot({**base, "status": "APPROVED", "quality_score": {"score": "GREEN"}})
        b = snapshot({**base, "status": "PAUSED"})
        c = snapshot({**base, "components": [{"type": "BODY", "text": "Hello {{1}}"}]})
        assert a.sha256 == b.sha256 != c.sha256
        assert a.canonical == '{"components":[{"text":"Hi {{1}}","type":"BODY"}],"language":"en","name":"t"}'

    def test_render_named_parameters_currency_and_url_button(self):
        from wa_archive.sources.meta.templates import render

        definition = {"components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{order}}"},
            {"type": "BODY", "text": "Hi {{first_name}}, you paid {{amount}}. {{unknown}}"},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}"}]}]}
        send = {"components": [
            {"type": "header", "parameters": [{"type": "text", "parameter_name": "order", "text": "A-1"}]},
            {"type": "body", "parameters": [
                {"type": "currency", "parameter_name": "amount",
                 "currency": {"fallback_value": "£12.50", "code": "GBP", "amount_1000": 12500}},
                {"type": "text", "parameter_name": "first_name", "text": "Ann"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "A-1"}]}]}
        assert render(definition, send).splitlines() == [
            "Order A-1", "Hi Ann, you paid £12.50. {{unknown}}", "[Track (https://x.example/t/A-1)]"]
