"""Low-level primitives (the "hazmat" layer). Prefer :mod:`secagg_rec.secagg`.

Everything here comes from ``cryptography`` (X25519, Ed25519, HKDF-SHA256,
AES-256-GCM, AES-CTR) except Shamir sharing, which is hand-written and vectorized
because no well-kept library offers it fast enough for thousands of holders (see
:mod:`secagg_rec.crypto.shamir`). This package imports neither torch nor any model code.

Modules:
    random   injected randomness (OS CSPRNG by default)
    keys     X25519 key pairs and agreement, Ed25519 signatures
    kdf      HKDF-SHA256 with domain-separated labels
    aead     AES-256-GCM share boxes bound to session, round, sender, receiver
    prg      AES-CTR mask expansion uniform over Z_{2^b}
    shamir   t-of-n Shamir sharing over GF(p), vectorized with numpy
"""
