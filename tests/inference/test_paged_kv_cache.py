"""Block allocator, block tables, copy-on-write, prefix cache and swapping (paged_kv_cache.py),
driven by unit tests and a hypothesis state machine that checks the invariants after every step."""
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from minillm import ModelConfig
from minillm.inference.paged_kv_cache import BlockAllocator, NoFreeBlocks, PagedKVCache, block_hash

CFG = ModelConfig(arch="llama", vocab_size=8, n_layer=2, n_head=2, n_kv_head=1, d_model=8, ffn_dim=16)


def prefix_code(tokens):
    """A stand-in for the K of the last position: it depends on the whole prefix, like real K/V
    (a polynomial hash kept below 2**24 so float32 stores it exactly)."""
    h = 0
    for t in tokens:
        h = (h * 31 + int(t) + 1) % 16777213
    return float(h)


def fill(cache, sid, n):
    """Compute (fake) K/V for the next n positions of sid: prepare, write every layer, commit."""
    seq = cache.seqs[sid]
    slots = cache.prepare(sid, n)
    start = seq.num_computed
    codes = np.array([prefix_code(seq.tokens[:p + 1]) for p in range(start, start + n)], np.float32)
    kv = np.broadcast_to(codes[:, None, None], (n, CFG.n_kv_head, CFG.head_dim))
    for l in range(CFG.n_layer):
        cache.write(l, slots, kv + l, -kv)
    cache.commit(sid, n)


def check_contents(cache, sid, tokens):
    seq = cache.seqs[sid]
    assert seq.tokens[:seq.num_computed] == tokens[:seq.num_computed]
    want = np.array([prefix_code(tokens[:p + 1]) for p in range(seq.num_computed)], np.float32)
    for l in range(CFG.n_layer):
        k, v = cache.gather(l, sid, seq.num_computed)                            # (Hkv, n, D)
        np.testing.assert_array_equal(k, np.broadcast_to((want + l)[None, :, None], k.shape))
        np.testing.assert_array_equal(v, np.broadcast_to(-want[None, :, None], v.shape))


# ------------------------------------------------------------------------------------ unit tests
def test_allocator_refcounts_and_double_free():
    a = BlockAllocator(3)
    b0, b1 = a.allocate(), a.allocate()
    a.incref(b0)
    a.free(b0)
    assert a.ref[b0] == 1 and a.num_free() == 1
    a.free(b0)
    with pytest.raises(ValueError, match="double free"):
        a.free(b0)
    a.allocate(), a.allocate()
    with pytest.raises(NoFreeBlocks):
        a.allocate()
    a.check()


def test_prefix_cache_hits_and_lru_eviction():
    a = BlockAllocator(2)
    h1, h2, h3 = (block_hash(None, [i]) for i in range(3))
    b1 = a.allocate()
    a.register(b1, h1)
    a.free(b1)                                   # cached, evictable
    assert a.lookup(h1) == b1 and a.hit_rate() == 1.0
    a.free(b1)
    b2 = a.allocate()
    a.register(b2, h2)
    a.free(b2)                                   # LRU order: b1 (older), b2
    b3 = a.allocate()                            # nothing free: evicts b1, the least recent
    assert b3 == b1 and a.lookup(h1) is None and a.evictions == 1
    assert a.lookup(h2) == b2
    a.check({b2: 1, b3: 1})
    assert h3 not in a.cached


def test_hash_chain_names_the_whole_prefix():
    assert block_hash(block_hash(None, [1, 2]), [3, 4]) != block_hash(block_hash(None, [9, 9]), [3, 4])
    assert block_hash(None, [1, 2]) == block_hash(None, np.array([1, 2]))


def test_prefix_reuse_skips_computed_blocks():
    cache = PagedKVCache(CFG, num_blocks=16, block_size=4)
    prompt = list(range(8)) + [1, 2, 3, 4, 5]
    assert cache.add_sequence("a", prompt) == 0
    fill(cache, "a", len(prompt))
    # same first 8 tokens: two full blocks reused; a prompt of exactly 8 keeps its last block to compute
    assert cache.add_sequence("b", prompt[:8] + [7, 7]) == 8
    assert cache.seqs["b"].block_table[:2] == cache.seqs["a"].block_table[:2]
    assert cache.add_sequence("c", prompt[:8]) == 4
    fill(cache, "b", 2)
    check_contents(cache, "b", prompt[:8] + [7, 7])
    # lookups stop at the first miss: "a" 1 query (miss), "b" 2 (hits), "c" 1 (hit)
    assert cache.allocator.hit_rate() == 3 / 4
    cache.check()


def test_copy_on_write_keeps_forks_apart():
    cache = PagedKVCache(CFG, num_blocks=8, block_size=4)
    cache.add_sequence(0, [1, 2, 3, 4, 5, 6])
    fill(cache, 0, 6)
    cache.fork(0, 1)
    shared_last = cache.seqs[0].block_table[-1]
    assert cache.allocator.ref[shared_last] == 2
    for sid, tok in ((0, 7), (1, 3)):
        cache.append_token(sid, tok)
        fill(cache, sid, 1)
    assert cache.seqs[0].block_table[0] == cache.seqs[1].block_table[0]      # full block: shared
    assert cache.seqs[0].block_table[1] != cache.seqs[1].block_table[1]      # written: copied
    check_contents(cache, 0, [1, 2, 3, 4, 5, 6, 7])
    check_contents(cache, 1, [1, 2, 3, 4, 5, 6, 3])
    cache.check()


def test_prepare_is_atomic_when_short_of_blocks():
    cache = PagedKVCache(CFG, num_blocks=2, block_size=4, enable_prefix_caching=False)
    cache.add_sequence(0, list(range(12)))
    with pytest.raises(NoFreeBlocks):
        cache.prepare(0, 12)
    assert cache.seqs[0].block_table == [] and cache.allocator.num_free() == 2
    cache.check()


def test_swap_out_and_in_round_trip():
    cache = PagedKVCache(CFG, num_blocks=4, block_size=4, num_host_blocks=4)
    cache.add_sequence(0, [3, 1, 4, 1, 5, 9])
    fill(cache, 0, 6)
    cache.swap_out(0)
    assert cache.allocator.num_used() == 0 and 0 in cache.swapped
    cache.add_sequence(1, [2] * 16)              # overwrite every device block meanwhile
    fill(cache, 1, 16)
    cache.free(1)
    cache.swap_in(0)
    check_contents(cache, 0, [3, 1, 4, 1, 5, 9])
    cache.check()


# ------------------------------------------------------------------------------------ state machine
class PagedCacheMachine(RuleBasedStateMachine):
    """Random admit / append / fork / free / swap sequences on a small pool (so eviction and
    NoFreeBlocks happen often). After every rule: allocator invariants (no leak, no double free,
    refcounts equal to block-table references), and every live sequence reads back exactly the
    K/V of its own tokens through its block table (copy-on-write never leaks a write)."""

    @initialize(num_blocks=st.integers(2, 12), block_size=st.sampled_from([1, 2, 4]),
                prefix=st.booleans())
    def setup(self, num_blocks, block_size, prefix):
        self.cache = PagedKVCache(CFG, num_blocks, block_size, enable_prefix_caching=prefix,
                                  num_host_blocks=8)
        self.tokens = {}      # sid -> the tokens that sequence must read back
        self.next_id = 0

    def live(self):
        return sorted(self.cache.seqs)

    @rule(prompt=st.lists(st.integers(0, 3), min_size=1, max_size=14))
    def admit(self, prompt):
        sid = self.next_id
        self.next_id += 1
        done = self.cache.add_sequence(sid, prompt)
        try:
            fill(self.cache, sid, len(prompt) - done) if done < len(prompt) else None
        except NoFreeBlocks:
            self.cache.free(sid)                 # admission fails: the hit blocks go back
            return
        self.tokens[sid] = list(prompt)

    @precondition(lambda self: self.cache.seqs)
    @rule(data=st.data(), token=st.integers(0, 3))
    def append(self, data, token):
        sid = data.draw(st.sampled_from(self.live()))
        self.cache.append_token(sid, token)
        before = list(self.cache.seqs[sid].block_table)
        try:
            fill(self.cache, sid, 1)
        except NoFreeBlocks:
            assert self.cache.seqs[sid].block_table == before      # atomic
            self.cache.seqs[sid].tokens.pop()
            return
        self.tokens[sid].append(token)

    @precondition(lambda self: self.cache.seqs)
    @rule(data=st.data())
    def fork(self, data):
        sid = data.draw(st.sampled_from(self.live()))
        child = self.next_id
        self.next_id += 1
        self.cache.fork(sid, child)
        self.tokens[child] = list(self.tokens[sid])

    @precondition(lambda self: self.tokens)
    @rule(data=st.data())
    def free(self, data):
        sid = data.draw(st.sampled_from(sorted(self.tokens)))
        self.cache.free(sid)
        del self.tokens[sid]

    @precondition(lambda self: self.cache.seqs)
    @rule(data=st.data())
    def swap_out(self, data):
        sid = data.draw(st.sampled_from(self.live()))
        try:
            self.cache.swap_out(sid)
        except NoFreeBlocks:
            assert sid in self.cache.seqs

    @precondition(lambda self: self.cache.swapped)
    @rule(data=st.data())
    def swap_in(self, data):
        sid = data.draw(st.sampled_from(sorted(self.cache.swapped)))
        try:
            self.cache.swap_in(sid)
        except NoFreeBlocks:
            assert sid in self.cache.swapped

    @invariant()
    def consistent(self):
        if not hasattr(self, "cache"):
            return
        self.cache.check()
        for sid in self.live():
            check_contents(self.cache, sid, self.tokens[sid])
        if not self.tokens:   # everything freed: every block is reusable again (no leak)
            assert self.cache.allocator.num_free() == self.cache.num_blocks


PagedCacheMachine.TestCase.settings = settings(max_examples=120, stateful_step_count=30, deadline=None)
test_paged_cache_state_machine = PagedCacheMachine.TestCase
