#!/bin/sh
# Creates a local certificate authority and a server certificate signed by it,
# for trying wsedge's wss:// listeners with clients that verify certificates.
#
#   certs/make-dev-ca.sh [DIR]        # DIR defaults to ./dev-certs
#
# Writes into DIR:
#   ca.pem          the CA certificate: import it into the browser or OS trust
#                   store, or pass it to a client (NODE_EXTRA_CA_CERTS, --cacert)
#   ca-key.pem      the CA private key (keep it private; it can sign anything)
#   server.pem      the server certificate for localhost, 127.0.0.1 and ::1,
#                   followed by the CA certificate (leaf first, as wsedge expects)
#   server-key.pem  the server private key (PKCS#8)
#
# An existing ca.pem/ca-key.pem pair in DIR is reused, so a CA you have already
# trusted stays trusted; the server certificate is always issued anew.
# For development only: never use these files on a public server.
set -eu

dir=${1:-./dev-certs}
ca_days=3650
server_days=825

command -v openssl >/dev/null 2>&1 || {
    echo "make-dev-ca.sh: openssl is required (apt-get install openssl)" >&2
    exit 1
}

mkdir -p "$dir"
# Private keys are created readable by their owner only.
umask 077

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -f "$dir/ca.pem" ] && [ -f "$dir/ca-key.pem" ]; then
    echo "reusing the CA in $dir/ca.pem"
else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca-key.pem"
    cat >"$work/ca.ext" <<'EOF'
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -new -key "$dir/ca-key.pem" -subj "/CN=wsedge development CA" -out "$work/ca.csr"
    openssl x509 -req -in "$work/ca.csr" -signkey "$dir/ca-key.pem" -days "$ca_days" \
        -sha256 -extfile "$work/ca.ext" -out "$dir/ca.pem"
fi

openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server-key.pem"
cat >"$work/server.ext" <<'EOF'
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1, IP:::1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
openssl req -new -key "$dir/server-key.pem" -subj "/CN=localhost" -out "$work/server.csr"
openssl x509 -req -in "$work/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -CAcreateserial -CAserial "$work/ca.srl" -days "$server_days" -sha256 \
    -extfile "$work/server.ext" -out "$work/leaf.pem"
cat "$work/leaf.pem" "$dir/ca.pem" >"$dir/server.pem"
# Certificates are public; only the keys stay owner-only.
chmod 644 "$dir/ca.pem" "$dir/server.pem"

echo "wrote $dir/ca.pem, $dir/ca-key.pem, $dir/server.pem, $dir/server-key.pem"
echo "configure wsedge with:"
echo "  [server.tls]"
echo "  cert = \"$dir/server.pem\""
echo "  key  = \"$dir/server-key.pem\""
