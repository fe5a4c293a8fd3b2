"""Properties of the counter: the vectorised path equals the layer-wise one; counts behave as counts must."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moeplan import MLA, Architecture, Convention, count
from moeplan.flops.vectorised import count_arrays

CONVENTIONS = list(Convention)


@st.composite
def templates(draw):
    """Categorical features shared by a batch (what the vectorised path takes from its template)."""
    mla = draw(st.booleans())
    return {
        "mla": mla,
        "q_lora": mla and draw(st.booleans()),
        "qk_norm": "none" if mla else draw(st.sampled_from(["none", "head", "full"])),
        "attention_bias": "none" if mla else draw(st.sampled_from(["none", "qkv", "all"])),
        "attention_sinks": draw(st.booleans()),
        "norm_bias": draw(st.booleans()),
        "router_bias": draw(st.booleans()),
        "expert_bias": draw(st.booleans()),
        "shared_expert_gate": draw(st.booleans()),
        "tie_embeddings": draw(st.booleans()),
    }


@st.composite
def architectures(draw, t):
    """One architecture with the categorical features `t` and random sizes and layer patterns."""
    n_layers = draw(st.integers(1, 40))
    n_kv = draw(st.integers(1, 16))
    n_heads = n_kv * (1 if t["mla"] else draw(st.integers(1, 8)))
    n_experts = draw(st.integers(1, 512))
    window = draw(st.one_of(st.none(), st.integers(1, 20000)))
    fields = dict(
        n_layers=n_layers,
        d_hidden=draw(st.integers(1, 16384)),
        n_heads=n_heads,
        n_kv_heads=n_kv if not t["mla"] else n_heads,
        d_expert=draw(st.integers(1, 8192)),
        n_experts=n_experts,
        top_k=draw(st.integers(1, n_experts)),
        n_shared_experts=draw(st.integers(1 if t["shared_expert_gate"] else 0, 4)),
        d_shared_expert=draw(st.integers(1, 8192)),
        vocab_size=draw(st.integers(1, 262144)),
        seq_len=draw(st.integers(1, 131072)),
        qk_norm=t["qk_norm"],
        attention_bias=t["attention_bias"],
        attention_sinks=t["attention_sinks"],
        norm_bias=t["norm_bias"],
        router_bias=t["router_bias"],
        expert_bias=t["expert_bias"],
        shared_expert_gate=t["shared_expert_gate"],
        tie_embeddings=t["tie_embeddings"],
        dense_layers=tuple(draw(st.sets(st.integers(0, n_layers - 1)))),
        d_dense_ffn=draw(st.integers(1, 30000)),
    )
    if window is not None:
        fields |= {"sliding_window": window, "sliding_layers": tuple(draw(st.sets(st.integers(0, n_layers - 1),
                                                                                 min_size=1)))}
    if t["mla"]:
        fields["mla"] = MLA(
            q_lora_rank=draw(st.integers(1, 2048)) if t["q_lora"] else None,
            kv_lora_rank=draw(st.integers(1, 1024)),
            qk_rope_head_dim=draw(st.integers(1, 128)),
            qk_nope_head_dim=draw(st.integers(1, 256)),
            v_head_dim=draw(st.integers(1, 256)),
        )
    else:
        fields["d_head"] = draw(st.integers(1, 256))
    return Architecture(**fields)


NUMERIC = ("n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head", "d_expert", "n_experts", "top_k",
           "n_shared_experts", "d_shared_expert", "d_dense_ffn", "vocab_size", "seq_len")
MLA_NUMERIC = ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_vectorised_equals_layerwise(data):
    t = data.draw(templates())
    archs = data.draw(st.lists(architectures(t), min_size=1, max_size=6))
    windowed = [a for a in archs if a.sliding_window is not None]
    archs = windowed if len(windowed) == len(archs) else [a for a in archs if a.sliding_window is None] or archs[:1]
    template = archs[0]
    # d_dense_ffn is None (canonical) where there are no dense layers: 0 builds nothing there either
    arrays = {k: np.array([getattr(a, k) or 0 for a in archs]) for k in NUMERIC
              if any(getattr(a, k) is not None for a in archs)}
    if template.mla is not None:
        arrays |= {k: np.array([getattr(a.mla, k) for a in archs]) for k in MLA_NUMERIC
                   if getattr(template.mla, k) is not None}
    if template.sliding_window is not None:
        arrays["sliding_window"] = np.array([a.sliding_window for a in archs])
    arrays["n_dense"] = np.array([len(a.dense_layers) for a in archs])
    arrays["n_sliding"] = np.array([len(a.sliding_layers) for a in archs])
    causal = data.draw(st.booleans())
    for convention in CONVENTIONS:
        vec = count_arrays(template, convention, causal, **arrays)
        by_component = vec.train_flops_by_component()
        for i, arch in enumerate(archs):
            one = count(arch, convention, causal)
            for key in ("all", "without_input_embedding", "without_embeddings"):
                assert vec.total[key][i] == getattr(one.total, key)
                assert vec.active[key][i] == getattr(one.active, key)
            # exact equality of floats: both paths divide the same integer by seq once
            assert vec.train_flops_per_token[i] == one.train_flops_per_token
            for comp, value in one.train_flops_by_component.items():
                assert by_component[comp][i] == value, comp


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_active_never_exceeds_total(data):
    arch = data.draw(architectures(data.draw(templates())))
    c = count(arch)
    for key in ("all", "without_input_embedding", "without_embeddings"):
        assert getattr(c.active, key) <= getattr(c.total, key)
    assert c.active.without_embeddings <= c.active.without_input_embedding <= c.active.all


GROWABLE = ("n_layers", "d_hidden", "d_head", "d_expert", "n_experts", "n_shared_experts", "d_shared_expert",
            "vocab_size", "seq_len", "top_k")


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_counts_grow_with_every_size(data):
    t = data.draw(templates().filter(lambda t: not t["mla"]))
    arch = data.draw(architectures(t))
    field = data.draw(st.sampled_from(GROWABLE + ("heads",)))
    if field == "heads":
        bigger = arch.model_copy(update={"n_heads": arch.n_heads + arch.n_kv_heads})
    elif field == "top_k":
        bigger = arch.model_copy(update={"top_k": min(arch.top_k + 1, arch.n_experts)})
    else:
        bigger = arch.model_copy(update={field: getattr(arch, field) + 1})
    for convention in CONVENTIONS:
        small, big = count(arch, convention), count(bigger, convention)
        assert big.total.all >= small.total.all
        assert big.active.all >= small.active.all
        assert big.train_flops_per_token >= small.train_flops_per_token


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_gqa_never_exceeds_mha(data):
    arch = data.draw(architectures(data.draw(templates().filter(lambda t: not t["mla"]))))
    mha = arch.model_copy(update={"n_kv_heads": arch.n_heads})
    for convention in CONVENTIONS:
        gqa, full = count(arch, convention), count(mha, convention)
        assert gqa.total.all <= full.total.all
        assert gqa.train_flops_per_token <= full.train_flops_per_token


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_vectorised_refuses_int64_overflow():
    arch = Architecture(n_layers=1000, d_hidden=65536, n_heads=512, d_expert=65536, n_experts=4096, top_k=4096,
                        vocab_size=10**6, seq_len=10**7)
    with pytest.raises(OverflowError):
        count_arrays(arch)
    assert count(arch).train_flops_per_token > 2**63 / 1e7  # the layer-wise path uses Python ints


def test_batch_counted_when_only_the_combined_maxima_would_overflow():
    """A huge seq with a tiny model and a huge model with a tiny seq: each fits int64, their maxima do not."""
    template = Architecture(n_layers=1000, d_hidden=65536, n_heads=512, d_expert=65536, n_experts=4096, top_k=4096,
                            vocab_size=10**6, seq_len=8)
    small_long = template.model_copy(update={"n_layers": 1, "d_hidden": 64, "n_heads": 1, "d_head": 64,
                                             "n_kv_heads": 1, "d_expert": 64, "n_experts": 1, "top_k": 1,
                                             "vocab_size": 10, "d_shared_expert": 64, "seq_len": 10**7})
    archs = [template, Architecture(**dict(small_long))]
    arrays = {k: np.array([getattr(a, k) for a in archs]) for k in
              ("n_layers", "d_hidden", "n_heads", "n_kv_heads", "d_head", "d_expert", "n_experts", "top_k",
               "vocab_size", "seq_len", "d_shared_expert")}
    vec = count_arrays(template, "exact", True, **arrays)
    for i, arch in enumerate(archs):
        assert vec.train_flops_per_token[i] == count(arch).train_flops_per_token
        assert vec.total["all"][i] == count(arch).total.all


# A model whose 6·N_a·seq passes 2**53: float(6·N_a·seq) / seq rounded twice and moved with seq (issue 16).
BIG = Architecture(n_layers=61, d_hidden=7167, n_heads=127, n_kv_heads=1, d_head=129, d_expert=2055,
                   n_experts=257, top_k=63, n_shared_experts=1, vocab_size=129281, seq_len=14495)


@pytest.mark.parametrize("seq_len", [14495, 14496, 131071])
def test_6n_is_exactly_six_active_non_embedding_parameters_at_any_seq(seq_len):
    arch = BIG.model_copy(update={"seq_len": seq_len})
    c = count(arch, Convention.SIX_N)
    assert 6 * c.active.without_embeddings * seq_len > 2**53  # the case that rounded twice
    assert c.train_flops_per_token == 6 * c.active.without_embeddings
    assert count_arrays(arch, Convention.SIX_N).train_flops_per_token[()] == 6 * c.active.without_embeddings


@settings(max_examples=200, deadline=None)
@given(per_seq=st.integers(2**36, 2**45), seq=st.integers(1, 131072), rest=st.integers(0, 131071))
def test_per_token_is_exact_on_multiples_and_monotone(per_seq, seq, rest):
    """`6n`-style numerators (a multiple of seq) divide exactly; more FLOPs never lower FLOPs per token; the
    layer-wise (Python int) and vectorised (int64) paths agree."""
    from moeplan.flops.count import per_token

    x = per_seq * seq
    assert per_token(x, seq) == per_seq
    rest %= seq
    assert per_token(x + rest, seq) >= per_token(x, seq)
    assert per_token(x + rest, seq) == float(per_token(np.int64(x + rest), np.int64(seq)))
