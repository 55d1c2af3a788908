from firetower.auth.schemas import Role


def test_declare_and_show_over_api(factory):
    responder = factory.user(Role.responder)
    factory.service("checkout", tier=1, estimated_users=5000)
    answer = responder.post(
        "/api/v1/incidents",
        json={"title": "Checkout down", "severity": "SEV3", "services": ["checkout"]},
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["ref"].startswith("INC-")
    # tier-1 service impacted: the default policy raises to SEV2
    assert body["severity"] == "SEV2"
    shown = responder.get(f"/api/v1/incidents/{body['ref']}").json()
    assert shown["blast_radius"]["tier1_impacted"] == ["checkout"]
