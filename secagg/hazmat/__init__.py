"""Dangerous primitives, each behind a small checked function (pyca's hazmat convention).

Nothing here keeps protocol state; callers outside ``secagg`` should prefer the recipes in
``protocols``.
"""

__all__: list[str] = []
