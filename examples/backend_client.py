"""A backend client of the service, as a DTR client or practice system would
be one (SMART Backend Services): make a key pair once, register its public
JWKS with the payer, then trade a signed assertion for an access token.
Run it with the project's virtual environment (it needs PyJWT and
cryptography), from the checkout:

    .venv/bin/python examples/backend_client.py keys my-ehr    # var/my-ehr.key.pem, var/my-ehr.jwks.json
    .venv/bin/dtr clients add my-ehr --name "My EHR" --jwks var/my-ehr.jwks.json   # the payer registers it
    .venv/bin/python examples/backend_client.py token my-ehr http://127.0.0.1:8080   # prints a token

A CDS client (CRD: the EHR calling the payer's CDS Hooks services) signs a
JWT for each call instead, its ``aud`` the service called:

    .venv/bin/dtr clients add my-ehr --jwks var/my-ehr.jwks.json --cds-hooks
    .venv/bin/python examples/backend_client.py cds-jwt my-ehr http://127.0.0.1:8080/cds-services/dtr-pa-order-sign

The keys go to ``var/`` (beside the store, ignored by git), never into the
checkout's tracked files: the private key is a secret. The token lives five
minutes (``expires_in``); ask for a new one with a new assertion when it runs
out.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

SCOPE = (
    "system/Questionnaire.rs system/QuestionnaireResponse.cr system/ClaimResponse.r"
    " system/ValueSet.rs system/Library.r system/OperationDefinition.r"
)


KEYS = Path("var")  # ignored by git, like the store beside it


def make_keys(client_id: str) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    KEYS.mkdir(exist_ok=True)
    private = KEYS / f"{client_id}.key.pem"
    private.touch(mode=0o600)
    private.chmod(0o600)  # readable by its owner alone, before the key is in it
    private.write_bytes(pem)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwks = {"keys": [{**public, "kid": f"{client_id}-1", "alg": "ES384", "use": "sig"}]}
    public_keys = KEYS / f"{client_id}.jwks.json"
    public_keys.write_text(json.dumps(jwks, indent=2))
    print(f"wrote {private} (keep it secret) and {public_keys} (give it to the payer)")


def token(client_id: str, base: str) -> str:
    with urllib.request.urlopen(f"{base}/.well-known/smart-configuration") as reply:
        endpoint = json.loads(reply.read())["token_endpoint"]
    key = serialization.load_pem_private_key((KEYS / f"{client_id}.key.pem").read_bytes(), None)
    now = int(time.time())
    assertion = jwt.encode(
        {
            "iss": client_id,
            "sub": client_id,
            "aud": endpoint,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
        },
        key,
        algorithm="ES384",
        headers={"kid": f"{client_id}-1", "typ": "JWT"},
    )
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
        "scope": SCOPE,
    }
    request = urllib.request.Request(endpoint, data=urllib.parse.urlencode(form).encode())
    with urllib.request.urlopen(request) as reply:
        return str(json.loads(reply.read())["access_token"])


def cds_jwt(client_id: str, service: str) -> str:
    """The JWT a CDS client sends with one call of ``service`` (CDS Hooks 2.0)."""
    key = serialization.load_pem_private_key((KEYS / f"{client_id}.key.pem").read_bytes(), None)
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": service, "iat": now, "exp": now + 240,
              "jti": uuid.uuid4().hex}  # fmt: skip
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": f"{client_id}-1"})


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "keys":
        make_keys(sys.argv[2])
    elif len(sys.argv) == 4 and sys.argv[1] == "token":
        print(token(sys.argv[2], sys.argv[3].rstrip("/")))
    elif len(sys.argv) == 4 and sys.argv[1] == "cds-jwt":
        print(cds_jwt(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
