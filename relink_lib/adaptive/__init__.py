"""Chapter 11: the adaptive attacker on a head-only DP release, who is protected, and the custodian's decision.

:mod:`.attacks` (pure maths on pre-projection features), :mod:`.stage` (:func:`get_adaptive`, cached) and
:mod:`.summary` (payload, tables, sentences, the recommendation).
"""
