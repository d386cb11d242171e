#!/usr/bin/env python3
"""An independent JWT signer for wsedge's auth tests, built on PyJWT and
`cryptography`: the server verifies tokens that code it does not share made.

    sign_jwt.py keygen DIR
        Writes fresh keys into DIR: for each of rsa, rsa2 (RSA 2048), p256,
        p384 and ed25519 a private key NAME.key.pem (PKCS#8), its public key
        NAME.pub.pem (SubjectPublicKeyInfo) and NAME.jwk.json (the public JWK,
        its "kid" the NAME); and hmac.secret (64 random URL-safe characters,
        no newline: enough for HS512, and text like the secrets operators
        write, since wsedge drops one trailing newline). Nothing is
        committed: the tests call this into a temporary directory.

    sign_jwt.py sign < requests > tokens
        One JSON request per input line, one compact token per output line:
          {"alg": "RS256", "key": "DIR/rsa.key.pem", "claims": {...},
           "headers": {"kid": "rsa"}}
        "key" is a PEM private key, or for HS* a file of secret bytes.
        Instead of "claims", "payload" signs that exact string (a JSON array,
        a number: what no claims object can be). With "forge_hmac": true the
        token is HMAC-signed by hand with the key file's bytes as the secret,
        whatever they are: the HS/RS confusion attack, which PyJWT itself
        refuses to produce from a public key. "alg": "none" makes an
        unsigned token.
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

# token_urlsafe(48) is 64 characters.
HMAC_SECRET_BYTES = 48

KEYS = {
    "rsa": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "rsa2": (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), RSAAlgorithm),
    "p256": (lambda: ec.generate_private_key(ec.SECP256R1()), ECAlgorithm),
    "p384": (lambda: ec.generate_private_key(ec.SECP384R1()), ECAlgorithm),
    "ed25519": (ed25519.Ed25519PrivateKey.generate, OKPAlgorithm),
}

HASHES = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}


def write(path, data):
    with open(path, "wb") as out:
        out.write(data)


def keygen(directory):
    os.makedirs(directory, exist_ok=True)
    for name, (generate, algorithm) in KEYS.items():
        private = generate()
        public = private.public_key()
        write(
            os.path.join(directory, f"{name}.key.pem"),
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )
        write(
            os.path.join(directory, f"{name}.pub.pem"),
            public.public_bytes(
                serialization.Encoding.PEM,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            ),
        )
        jwk = json.loads(algorithm.to_jwk(public))
        jwk["kid"] = name
        write(os.path.join(directory, f"{name}.jwk.json"), json.dumps(jwk).encode())
    write(os.path.join(directory, "hmac.secret"), secrets.token_urlsafe(HMAC_SECRET_BYTES).encode())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge_hmac(alg, secret, headers, payload):
    header = {"alg": alg, "typ": "JWT", **headers}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(payload)
    tag = hmac.new(secret, signing_input.encode(), HASHES[alg]).digest()
    return signing_input + "." + b64(tag)


def sign_one(request):
    alg = request["alg"]
    headers = request.get("headers", {})
    if "payload" in request:
        payload = request["payload"].encode()
    else:
        payload = json.dumps(request["claims"]).encode()
    if alg == "none":
        key = None
    else:
        with open(request["key"], "rb") as source:
            key = source.read()
    if request.get("forge_hmac"):
        return forge_hmac(alg, key, headers, payload)
    return jwt.api_jws.encode(payload, key, algorithm=alg, headers=headers or None)


def sign():
    for line in sys.stdin:
        if line.strip():
            print(sign_one(json.loads(line)), flush=True)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
    elif len(sys.argv) == 2 and sys.argv[1] == "sign":
        sign()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
