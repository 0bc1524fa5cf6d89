#!/usr/bin/env bash
# curl-only session like the real container's CI: provision, operator, keys,
# sign, decrypt, certificate, lock, unlock. Usage: curl_session.sh BASE_URL
set -euo pipefail
API="$1"
C=(curl -sS -k --fail-with-body)
J=(-H "Content-Type: application/json")
ADM=(-u admin:Administrator)
OPR=(-u operator:opPassphrase)
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

"${C[@]}" "$API/health/state" | grep -q Unprovisioned
"${C[@]}" -X POST "${J[@]}" "$API/provision" \
  -d '{"unlockPassphrase":"UnlockPassphrase","adminPassphrase":"Administrator","systemTime":"2018-10-30T11:20:50Z"}'
"${C[@]}" -X PUT "${ADM[@]}" "${J[@]}" "$API/users/operator" \
  -d '{"realName":"Jane User","role":"Operator","passphrase":"opPassphrase"}' >/dev/null
"${C[@]}" -X POST "${ADM[@]}" "${J[@]}" "$API/keys/generate" \
  -d '{"type":"RSA","length":2048,"id":"rsakey","mechanisms":["RSA_Signature_PKCS1","RSA_Decryption_PKCS1"]}' >/dev/null
"${C[@]}" -X POST "${ADM[@]}" "${J[@]}" "$API/keys/generate" \
  -d '{"type":"EC_P256","id":"eckey","mechanisms":["ECDSA_Signature"]}' >/dev/null
"${C[@]}" -X POST "${ADM[@]}" "${J[@]}" "$API/keys/generate" \
  -d '{"type":"Curve25519","id":"edkey","mechanisms":["EdDSA_Signature"]}' >/dev/null
"${C[@]}" -X POST "${ADM[@]}" "${J[@]}" "$API/keys/generate" \
  -d '{"type":"Generic","length":256,"id":"aeskey","mechanisms":["AES_Encryption_CBC","AES_Decryption_CBC"]}' >/dev/null

# EC sign, verified with openssl
printf 'data to sign' > "$TMP/data"
HASH=$(openssl dgst -sha256 -binary "$TMP/data" | base64 -w0)
"${C[@]}" "${OPR[@]}" "$API/keys/eckey/public.pem" -o "$TMP/ec.pem"
"${C[@]}" -X POST "${OPR[@]}" "${J[@]}" "$API/keys/eckey/sign" -d "{\"mode\":\"ECDSA\",\"message\":\"$HASH\"}" \
  | python3 -c 'import json,sys,base64; sys.stdout.buffer.write(base64.b64decode(json.load(sys.stdin)["signature"]))' > "$TMP/sig"
openssl dgst -sha256 -verify "$TMP/ec.pem" -signature "$TMP/sig" "$TMP/data" | grep -q "Verified OK"

# Ed25519 sign
"${C[@]}" -X POST "${OPR[@]}" "${J[@]}" "$API/keys/edkey/sign" -d '{"mode":"EdDSA","message":"aGVsbG8="}' | grep -q signature

# RSA decrypt of an openssl ciphertext
"${C[@]}" "${OPR[@]}" "$API/keys/rsakey/public.pem" -o "$TMP/rsa.pem"
printf 'top secret' | openssl pkeyutl -encrypt -pubin -inkey "$TMP/rsa.pem" -out "$TMP/enc"
ENC=$(base64 -w0 "$TMP/enc")
"${C[@]}" -X POST "${OPR[@]}" "${J[@]}" "$API/keys/rsakey/decrypt" -d "{\"mode\":\"PKCS1\",\"encrypted\":\"$ENC\"}" \
  | grep -q "$(printf 'top secret' | base64 -w0)"

# AES-CBC round trip
OUT=$("${C[@]}" -X POST "${OPR[@]}" "${J[@]}" "$API/keys/aeskey/encrypt" \
  -d '{"mode":"AES_CBC","message":"AAAAAAAAAAAAAAAAAAAAAA=="}')
echo "$OUT" | grep -q '"iv"'

# certificate upload and fetch
printf 'certificate bytes' > "$TMP/cert"
"${C[@]}" -X PUT "${ADM[@]}" -H "Content-Type: application/octet-stream" --data-binary @"$TMP/cert" "$API/keys/eckey/cert"
"${C[@]}" "${OPR[@]}" -H "Accept: application/octet-stream" "$API/keys/eckey/cert" -o "$TMP/cert2"
cmp "$TMP/cert" "$TMP/cert2"

# lock, unlock
"${C[@]}" -X POST "${ADM[@]}" "$API/lock"
"${C[@]}" "$API/health/state" | grep -q Locked
test "$(curl -sk -o /dev/null -w '%{http_code}' "${OPR[@]}" "$API/keys")" = 412
"${C[@]}" -X POST "${J[@]}" "$API/unlock" -d '{"passphrase":"UnlockPassphrase"}'
"${C[@]}" "$API/health/state" | grep -q Operational
echo "curl session OK"
