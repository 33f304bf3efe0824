"""Paged KV cache (Kwon et al. 2023, "Efficient Memory Management for Large Language Model Serving
with PagedAttention", Sec. 4.1-4.4). Same K/V as kv_cache.KVCache, but stored in fixed-size blocks
(pages) of `block_size` token slots taken from one shared pool; each sequence's block table maps its
logical block i (positions i*bs .. i*bs+bs-1) to a physical block. Memory is reserved one block at a
time as a sequence grows, so at most block_size - 1 slots per sequence are ever wasted, where a
contiguous cache must reserve the maximum length up front.

Sharing (Sec. 4.4). Blocks carry reference counts. fork() gives a child sequence the parent's block
table with every count incremented (parallel sampling, beam search): nothing is copied. A block is
written only when it is a sequence's partially-filled last block; if that block is shared, the
writer first copies it into a fresh block (copy-on-write), so no sequence ever changes another's K/V.

Automatic prefix caching (vLLM's hash-based design, Kwon et al. follow-up; SGLang's RadixAttention,
Zheng et al. 2024, is the tree-shaped alternative). Every full block is named by a hash chained over
its parent's hash and its own tokens, h_i = H(h_{i-1}, tokens[i*bs:(i+1)*bs]), so equal hashes mean
equal whole prefixes and therefore equal K/V. A new sequence looks its prompt's full blocks up and
skips computing the ones found. A freed block whose hash is registered is not returned to the free
list but parked in an LRU list: still reusable by a later hit, evicted (oldest first) only when no
truly free block is left.

Swapping (Sec. 4.5). swap_out copies a sequence's blocks into a host pool (a second, larger array
standing in for CPU RAM behind a GPU) and frees them; swap_in copies them back into fresh blocks.
"""
import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np

from ..kernels.arith import ceil_div


class NoFreeBlocks(RuntimeError):
    """The pool cannot supply the blocks an operation needs; nothing was changed."""


def block_hash(parent, tokens):  # bytes | None, sequence of ints -> bytes
    """h_i = SHA-256(h_{i-1} || tokens as int64). A cryptographic hash, so two different prefixes
    never share K/V by accident (Python's 64-bit hash() would make that merely unlikely)."""
    h = hashlib.sha256(parent or b"root")
    h.update(np.asarray(tokens, dtype=np.int64).tobytes())
    return h.digest()


class BlockAllocator:
    """Physical block ids 0..num_blocks-1 with reference counts, a free list, and the prefix cache
    (hash -> block, plus an LRU list of cached blocks nobody references)."""

    def __init__(self, num_blocks, enable_prefix_caching=True):
        if not isinstance(num_blocks, (int, np.integer)) or num_blocks < 1:
            raise ValueError(f"num_blocks: expected an int >= 1, got {num_blocks!r}")
        self.num_blocks = int(num_blocks)
        self.enable_prefix_caching = bool(enable_prefix_caching)
        self.ref = [0] * self.num_blocks                 # holders of each block
        self.free_list = deque(range(self.num_blocks))   # ref 0 and no cached content
        self.hash_of = [None] * self.num_blocks          # registered hash of a cached block
        self.cached = {}                                 # hash -> block
        self.evictable = OrderedDict()                   # cached blocks with ref 0, oldest first
        self.queries = self.hits = self.evictions = 0

    # -- counts
    def num_free(self):
        """Blocks allocate() can hand out: truly free plus evictable cached ones."""
        return len(self.free_list) + len(self.evictable)

    def num_used(self):
        return self.num_blocks - self.num_free()

    def hit_rate(self):
        return self.hits / self.queries if self.queries else 0.0

    # -- allocation
    def allocate(self):
        """A block with reference count 1. Prefers the free list; otherwise evicts the least
        recently used cached block (its hash is forgotten)."""
        if self.free_list:
            b = self.free_list.popleft()
        elif self.evictable:
            b, _ = self.evictable.popitem(last=False)
            del self.cached[self.hash_of[b]]
            self.hash_of[b] = None
            self.evictions += 1
        else:
            raise NoFreeBlocks(f"all {self.num_blocks} blocks are in use")
        self.ref[b] = 1
        return b

    def incref(self, b):
        if self.ref[b] < 1:
            raise ValueError(f"block: {b} is not allocated (refcount {self.ref[b]})")
        self.ref[b] += 1

    def free(self, b):
        """Drop one reference; at zero the block becomes evictable (if cached) or free."""
        if not 0 <= b < self.num_blocks or self.ref[b] < 1:
            raise ValueError(f"block: double free of {b} (refcount {self.ref[b] if 0 <= b < self.num_blocks else '-'})")
        self.ref[b] -= 1
        if self.ref[b] == 0:
            if self.hash_of[b] is not None:
                self.evictable[b] = None          # most recently used at the end
            else:
                self.free_list.append(b)

    # -- prefix cache
    def lookup(self, h):
        """The block cached under hash h, with one more reference, or None (counted for hit_rate)."""
        if not self.enable_prefix_caching:
            return None
        self.queries += 1
        b = self.cached.get(h)
        if b is None:
            return None
        self.hits += 1
        if self.ref[b] == 0:
            del self.evictable[b]
        self.ref[b] += 1
        return b

    def register(self, b, h):
        """Name a full, referenced block by its chain hash so later prompts can reuse it. A hash
        already cached elsewhere (the same prefix computed twice) keeps its first block."""
        if not self.enable_prefix_caching or h in self.cached or self.hash_of[b] is not None:
            return False
        if self.ref[b] < 1:
            raise ValueError(f"block: {b} must be referenced to be registered")
        self.cached[h] = b
        self.hash_of[b] = h
        return True

    def check(self, table_refs=None):
        """Raise AssertionError unless the bookkeeping is consistent. table_refs: {block: number
        of block-table entries pointing at it}; when given, refcounts must match it exactly."""
        free = list(self.free_list)
        assert len(set(free)) == len(free), "a block is twice in the free list"
        assert not set(free) & set(self.evictable), "a block is both free and evictable"
        for b in range(self.num_blocks):
            in_free, in_lru = b in set(free), b in self.evictable
            if self.ref[b] > 0:
                assert not in_free and not in_lru, f"block {b} is referenced but listed as free"
            else:
                assert self.ref[b] == 0, f"block {b} has a negative refcount"
                assert in_free or in_lru, f"block {b} leaked: refcount 0 but in no free list"
                assert in_lru == (self.hash_of[b] is not None), f"block {b}: LRU list and hash disagree"
        assert all(self.cached[self.hash_of[b]] == b for b in range(self.num_blocks)
                   if self.hash_of[b] is not None), "hash table and block hashes disagree"
        assert len(self.cached) == sum(h is not None for h in self.hash_of)
        if table_refs is not None:
            for b in range(self.num_blocks):
                assert self.ref[b] == table_refs.get(b, 0), \
                    f"block {b}: refcount {self.ref[b]} but {table_refs.get(b, 0)} block-table entries"


@dataclass
class Sequence:
    tokens: list                    # ids whose K/V are in the cache or will be next
    block_table: list = field(default_factory=list)   # logical block -> physical block
    num_computed: int = 0           # positions 0..num_computed-1 hold K/V
    hashes: list = field(default_factory=list)        # chain hash of each full block


class PagedKVCache:
    """K/V pages (L, num_blocks, Hkv, block_size, D) float32, the allocator, and the sequences.

    Write protocol for n new positions of sequence s (what engine.py does every step):
        slots = cache.prepare(s, n)       # blocks allocated / copied-on-write; (n,) slot ids
        cache.write(l, slots, k, v)       # for each layer l, k v (n, Hkv, D)
        cache.commit(s, n)                # positions become valid; full blocks enter the prefix cache
    """

    def __init__(self, config, num_blocks, block_size=16, enable_prefix_caching=True,
                 num_host_blocks=0, dtype=np.float32):
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size: expected an int >= 1, got {block_size!r}")
        self.config, self.block_size = config, int(block_size)
        self.allocator = BlockAllocator(num_blocks, enable_prefix_caching)
        L, Hkv, D = config.n_layer, config.n_kv_head, config.head_dim
        shape = (L, int(num_blocks), Hkv, self.block_size, D)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        # host pool for swapped-out blocks, with its own free list
        host_shape = (L, int(num_host_blocks), Hkv, self.block_size, D)
        self.host_k = np.zeros(host_shape, dtype=dtype)
        self.host_v = np.zeros(host_shape, dtype=dtype)
        self.host_free = deque(range(int(num_host_blocks)))
        self.seqs = {}
        self.swapped = {}               # seq id -> (Sequence, host block ids)

    # -- sizes
    @property
    def num_blocks(self):
        return self.allocator.num_blocks

    def bytes_per_block(self):
        L, _, Hkv, bs, D = self.k.shape
        return 2 * L * Hkv * bs * D * self.k.itemsize

    def blocks_for(self, n_tokens):
        return ceil_div(n_tokens, self.block_size)

    # -- sequences
    def add_sequence(self, sid, tokens, max_cached=None):
        """Start sequence `sid` with known tokens (a prompt). With prefix caching, its leading full
        blocks that are cached are taken over (at most max_cached tokens, default len - 1: the last
        token must still run through the model to give logits). Returns the number of positions
        whose K/V are already present."""
        if sid in self.seqs or sid in self.swapped:
            raise ValueError(f"sid: sequence {sid!r} already exists")
        tokens = [int(t) for t in tokens]
        seq = Sequence(tokens)
        limit = len(tokens) - 1 if max_cached is None else min(max_cached, len(tokens))
        bs, parent = self.block_size, None
        for i in range(max(0, limit) // bs):
            h = block_hash(parent, tokens[i * bs:(i + 1) * bs])
            b = self.allocator.lookup(h)
            if b is None:
                break
            seq.block_table.append(b)
            seq.hashes.append(h)
            parent = h
        seq.num_computed = len(seq.block_table) * bs
        self.seqs[sid] = seq
        return seq.num_computed

    def append_token(self, sid, token):
        """Record a sampled token; its K/V are written by the next prepare/commit."""
        self.seqs[sid].tokens.append(int(token))

    def blocks_needed(self, sid, n):
        """New blocks prepare(sid, n) would take: fresh ones, plus one copy if the partially filled
        last block is shared."""
        seq = self.seqs[sid]
        have, need = len(seq.block_table), self.blocks_for(seq.num_computed + n)
        cow = int(seq.num_computed % self.block_size != 0 and
                  self.allocator.ref[seq.block_table[-1]] > 1)
        return max(0, need - have) + cow

    def prepare(self, sid, n):
        """Make room for positions num_computed .. num_computed+n-1 and return their slot ids
        (n,) int64 = block * block_size + offset. Atomic: raises NoFreeBlocks and changes nothing
        when the pool is short."""
        seq = self.seqs[sid]
        if n < 1 or seq.num_computed + n > len(seq.tokens):
            raise ValueError(f"n: expected 1 <= n <= {len(seq.tokens) - seq.num_computed} (tokens not yet "
                             f"computed), got {n}")
        needed = self.blocks_needed(sid, n)
        if needed > self.allocator.num_free():
            raise NoFreeBlocks(f"sequence {sid!r} needs {needed} blocks, {self.allocator.num_free()} free")
        bs = self.block_size
        if seq.num_computed % bs and self.allocator.ref[seq.block_table[-1]] > 1:
            old = seq.block_table[-1]             # copy-on-write: the block is shared
            new = self.allocator.allocate()
            self.k[:, new] = self.k[:, old]
            self.v[:, new] = self.v[:, old]
            self.allocator.free(old)
            seq.block_table[-1] = new
        while len(seq.block_table) < self.blocks_for(seq.num_computed + n):
            seq.block_table.append(self.allocator.allocate())
        pos = np.arange(seq.num_computed, seq.num_computed + n)                   # (n,)
        return np.asarray(seq.block_table, dtype=np.int64)[pos // bs] * bs + pos % bs

    def write(self, l, slots, k, v):  # layer, (n,), (n, Hkv, D), (n, Hkv, D)
        """Store K/V of n positions of layer l at their slots (from prepare)."""
        blk, off = slots // self.block_size, slots % self.block_size
        self.k[l, blk, :, off] = k             # advanced indices first: target is (n, Hkv, D)
        self.v[l, blk, :, off] = v

    def commit(self, sid, n):
        """Mark n prepared positions as holding K/V; blocks that became full get their chain hash
        and enter the prefix cache."""
        seq = self.seqs[sid]
        seq.num_computed += n
        bs = self.block_size
        while len(seq.hashes) < seq.num_computed // bs:
            i = len(seq.hashes)
            h = block_hash(seq.hashes[-1] if seq.hashes else None, seq.tokens[i * bs:(i + 1) * bs])
            seq.hashes.append(h)
            self.allocator.register(seq.block_table[i], h)

    def fork(self, parent, child):
        """child shares every block of parent (refcounts + 1); nothing is copied until one of them
        writes into a shared partial block."""
        if child in self.seqs or child in self.swapped:
            raise ValueError(f"child: sequence {child!r} already exists")
        p = self.seqs[parent]
        for b in p.block_table:
            self.allocator.incref(b)
        self.seqs[child] = Sequence(list(p.tokens), list(p.block_table), p.num_computed, list(p.hashes))

    def free(self, sid):
        """Release a sequence (running or swapped out)."""
        if sid in self.swapped:
            _, host_blocks = self.swapped.pop(sid)
            self.host_free.extend(host_blocks)
            return
        seq = self.seqs.pop(sid)
        for b in seq.block_table:
            self.allocator.free(b)

    # -- swapping
    def swap_out(self, sid):
        """Copy the sequence's blocks to the host pool and free them on the device."""
        seq = self.seqs[sid]
        n = len(seq.block_table)
        if n > len(self.host_free):
            raise NoFreeBlocks(f"host pool: sequence {sid!r} needs {n} blocks, {len(self.host_free)} free")
        host = [self.host_free.popleft() for _ in range(n)]
        self.host_k[:, host] = self.k[:, seq.block_table]
        self.host_v[:, host] = self.v[:, seq.block_table]
        for b in seq.block_table:
            self.allocator.free(b)
        del self.seqs[sid]
        self.swapped[sid] = (seq, host)

    def swap_in(self, sid):
        """Copy a swapped-out sequence back into fresh device blocks."""
        seq, host = self.swapped[sid]
        if len(host) > self.allocator.num_free():
            raise NoFreeBlocks(f"sequence {sid!r} needs {len(host)} blocks to swap in, "
                               f"{self.allocator.num_free()} free")
        del self.swapped[sid]
        seq.block_table = [self.allocator.allocate() for _ in host]
        self.k[:, seq.block_table] = self.host_k[:, host]
        self.v[:, seq.block_table] = self.host_v[:, host]
        self.host_free.extend(host)
        # the copies are private; re-register full blocks so later prompts can still hit them
        for b, h in zip(seq.block_table, seq.hashes):
            self.allocator.register(b, h)
        self.seqs[sid] = seq

    # -- reading
    def gather(self, l, sid, n):  # -> k, v (Hkv, n, D): positions 0..n-1 of layer l, as copies
        seq = self.seqs[sid]
        table = seq.block_table[:self.blocks_for(n)]
        Hkv, D = self.k.shape[2], self.k.shape[4]
        k = self.k[l, table].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]     # (Hkv, n, D)
        v = self.v[l, table].transpose(1, 0, 2, 3).reshape(Hkv, -1, D)[:, :n]
        return k, v

    def block_tables(self, sids):  # -> (B, max blocks) int32, padded with 0
        tables = [self.seqs[s].block_table for s in sids]
        out = np.zeros((len(sids), max((len(t) for t in tables), default=0) or 1), dtype=np.int32)
        for i, t in enumerate(tables):
            out[i, :len(t)] = t
        return out

    # -- accounting
    def kv_bytes_used(self):
        """Bytes holding real K/V (computed positions of live sequences; shared blocks counted once)."""
        per_slot = self.bytes_per_block() // self.block_size
        seen, total = set(), 0
        for seq in self.seqs.values():
            for i, b in enumerate(seq.block_table):
                if b not in seen:
                    seen.add(b)
                    total += per_slot * min(self.block_size, seq.num_computed - i * self.block_size)
        return total

    def kv_bytes_reserved(self):
        """Bytes of the blocks sequences hold (what a paged server has taken from the pool)."""
        return self.allocator.num_used() * self.bytes_per_block()   # evictable blocks count as free

    def check(self):
        """Allocator invariants plus: refcounts equal block-table references exactly."""
        refs = {}
        for seq in self.seqs.values():
            assert len(seq.block_table) >= self.blocks_for(seq.num_computed)
            assert seq.num_computed <= len(seq.tokens)
            for b in seq.block_table:
                refs[b] = refs.get(b, 0) + 1
        self.allocator.check(refs)
        host_used = [b for _, hb in self.swapped.values() for b in hb]
        assert len(set(host_used)) == len(host_used) and not set(host_used) & set(self.host_free)
        assert len(host_used) + len(self.host_free) == self.host_k.shape[1], "host block leaked"
