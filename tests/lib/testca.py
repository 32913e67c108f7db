#!/usr/bin/env python3
"""A throw-away certificate authority for the TLS tests, made with the
openssl command line (no Python crypto package needed).

    ca = TestCA(DIR)                     # DIR/ca.pem, DIR/ca.key (P-256)
    c = ca.issue("good", cn="localhost", san="IP:127.0.0.1,DNS:localhost")
    c.cert, c.key, c.chain               # leaf PEM, key PEM, leaf + CA PEM
    ca.issue("old", san=..., not_before="20200101000000Z",
             not_after="20200201000000Z")   # expired: dates in the past
    ca.issue("rsa", san=..., key_type="rsa")  # RSA 2048 instead of P-256
    fingerprint(pem_path) / fingerprint_der(der) -> "AB:CD:..." (SHA-256)
    serial(pem_path) -> "1A2B..." (hex, as openssl prints it)

Leaves are signed with `openssl ca` (so validity dates can lie in the past:
-startdate/-enddate, no faketime needed); the serial number is chosen by
the caller or counts up. Every file stays under DIR. Each openssl run is
bounded (30 s).

As a program:  testca.py DIR   writes a CA and a localhost server
certificate there (for trying things by hand).
"""

import hashlib
import os
import subprocess
import sys

OPENSSL = os.environ.get("OPENSSL", "openssl")

_REQ_CNF = """[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = %(cn)s
[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""

_CA_CNF = """[ ca ]
default_ca = testca
[ testca ]
dir = %(dir)s
database = %(dir)s/index.txt
new_certs_dir = %(dir)s/newcerts
serial = %(dir)s/serial
default_md = sha256
default_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no
[ policy_any ]
commonName = supplied
"""

_EXT_CNF = """[ leaf ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, %(ku)s
extendedKeyUsage = %(eku)s
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
%(san)s
"""


class CertError(RuntimeError):
    pass


def _run(argv, cwd=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, cwd=cwd, timeout=30)
    if p.returncode != 0:
        raise CertError("%s failed (%d): %s" % (
            " ".join(argv[:3]), p.returncode,
            (p.stderr or p.stdout).decode("utf-8", "replace").strip()[-600:]))
    return p.stdout


def _newkey_args(key_type):
    if key_type == "rsa":
        return ["-newkey", "rsa:2048"]
    if key_type == "ec":
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    raise ValueError("key_type must be 'ec' or 'rsa'")


class Cert:
    def __init__(self, name, cert, key, chain, serial_hex):
        self.name = name
        self.cert = cert        # the leaf, PEM
        self.key = key          # its private key, PEM (unencrypted)
        self.chain = chain      # leaf followed by the CA certificate
        self.serial = serial_hex

    def fingerprint(self):
        return fingerprint(self.cert)


class TestCA:
    def __init__(self, directory, cn="popbridge Test CA", key_type="ec", days=30):
        self.dir = os.path.abspath(directory)
        os.makedirs(os.path.join(self.dir, "newcerts"), exist_ok=True)
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self._next_serial = 0x1000
        cnf = os.path.join(self.dir, "ca-req.cnf")
        with open(cnf, "w") as f:
            f.write(_REQ_CNF % {"cn": cn})
        _run([OPENSSL, "req", "-x509", "-new", "-config", cnf,
              "-extensions", "v3_ca", "-nodes", "-sha256", "-days", str(days),
              "-keyout", self.key, "-out", self.cert] + _newkey_args(key_type))
        os.chmod(self.key, 0o600)
        open(os.path.join(self.dir, "index.txt"), "w").close()
        self.cnf = os.path.join(self.dir, "ca.cnf")
        with open(self.cnf, "w") as f:
            f.write(_CA_CNF % {"dir": self.dir})

    def issue(self, name, cn="localhost", san="IP:127.0.0.1,DNS:localhost",
              key_type="ec", serial=None, days=30, not_before=None,
              not_after=None, client=False):
        """A leaf certificate signed by this CA, in DIR/NAME.{pem,key}
        plus DIR/NAME.chain.pem. not_before/not_after: openssl ca dates
        (YYYYMMDDHHMMSSZ) for a certificate valid at another time."""
        base = os.path.join(self.dir, name)
        key, csr, cert, chain = (base + ".key", base + ".csr", base + ".pem",
                                 base + ".chain.pem")
        cnf = base + ".req.cnf"
        with open(cnf, "w") as f:
            f.write(_REQ_CNF % {"cn": cn})
        _run([OPENSSL, "req", "-new", "-config", cnf, "-nodes", "-sha256",
              "-keyout", key, "-out", csr] + _newkey_args(key_type))
        os.chmod(key, 0o600)
        if serial is None:
            serial = self._next_serial
            self._next_serial += 1
        with open(os.path.join(self.dir, "serial"), "w") as f:
            f.write("%04X\n" % serial)
        ext = base + ".ext.cnf"
        ku = "digitalSignature" + (", keyEncipherment" if key_type == "rsa" else "")
        with open(ext, "w") as f:
            f.write(_EXT_CNF % {
                "ku": ku,
                "eku": "clientAuth" if client else "serverAuth, clientAuth",
                "san": ("subjectAltName = " + san) if san else ""})
        argv = [OPENSSL, "ca", "-batch", "-config", self.cnf, "-notext",
                "-cert", self.cert, "-keyfile", self.key, "-in", csr,
                "-out", cert, "-extfile", ext, "-extensions", "leaf"]
        if not_before or not_after:
            argv += ["-startdate", not_before or "20200101000000Z",
                     "-enddate", not_after or "20200201000000Z"]
        else:
            argv += ["-days", str(days)]
        _run(argv)
        with open(chain, "wb") as out:
            for p in (cert, self.cert):
                with open(p, "rb") as f:
                    out.write(f.read())
        return Cert(name, cert, key, chain, "%04X" % serial)


def fingerprint_der(der):
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def fingerprint(pem_path):
    out = _run([OPENSSL, "x509", "-in", pem_path, "-noout", "-fingerprint",
                "-sha256"]).decode()
    # "sha256 Fingerprint=AB:CD:..." (the label's case varies by version)
    return out.strip().split("=", 1)[1]


def serial(pem_path):
    out = _run([OPENSSL, "x509", "-in", pem_path, "-noout", "-serial"]).decode()
    return out.strip().split("=", 1)[1]


def subject(pem_path):
    return _run([OPENSSL, "x509", "-in", pem_path, "-noout", "-subject"]).decode().strip()


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    ca = TestCA(argv[1])
    c = ca.issue("server")
    print("CA %s\nserver %s (key %s, chain %s)" % (ca.cert, c.cert, c.key, c.chain))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
