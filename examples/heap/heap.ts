/**
 * A toy object heap for GC experiments: objects bump-allocated in a Mapping, a mark phase in JS,
 * and a copying collection whose copy is done by the kernel: compact() moves every page that
 * holds a live object into a registered to-space with UFFDIO_MOVE, then pointers are fixed from
 * the forwarding table; stop-the-world, or concurrently with pages moved in on first touch. Page granularity: an object never crosses a page, so moving its page
 * moves it whole, and the dead objects sharing a live page ride along (the price of not copying).
 *
 * Object layout (little-endian): u32 id, u32 size (header + refs + payload), u32 nrefs, u32 spare,
 * then nrefs u32 heap offsets (NULL_REF for none), then the payload.
 */
import { compact, Mapping, pageSize, type Compaction, type ForwardingTable, type Userfaultfd } from 'userfaultfd';

export const NULL_REF = 0xffffffff;
const HEADER = 16;

/** The payload byte `i` of object `id`: recomputable, so every byte can be verified after a move. */
export function payloadByte(id: number, i: number): number {
  return (id * 131 + i * 17 + 3) & 0xff;
}

export interface HeapObject {
  id: number;
  offset: number;
  size: number;
  refs: number[];
}

export class ToyHeap {
  space: Mapping;
  #view: DataView;
  #top = 0;
  readonly page = pageSize();
  roots: number[] = [];
  #nextId = 1;

  constructor(readonly pages: number) {
    this.space = Mapping.anonymous(pages * this.page, { hugepage: false });
    // Any child_process spawn forks this process; a page shared with a child cannot be moved
    // (EBUSY). Keeping the heap out of forks keeps it movable.
    this.space.madvise('DONTFORK');
    this.#view = new DataView(this.space.buffer);
  }

  /** Bytes allocated so far (the bump pointer). */
  get top(): number {
    return this.#top;
  }

  /** Allocates an object with `nrefs` null references and `payload` bytes; returns its offset. */
  alloc(nrefs: number, payload: number): number {
    const size = HEADER + 4 * nrefs + payload;
    if (size > this.page) throw new RangeError(`an object must fit in a page (${size} > ${this.page})`);
    let at = this.#top;
    // Objects never cross a page: page-granular moves then move whole objects.
    if (Math.floor(at / this.page) !== Math.floor((at + size - 1) / this.page)) at = Math.ceil(at / this.page) * this.page;
    if (at + size > this.space.length) throw new RangeError('heap full');
    const id = this.#nextId++;
    const v = this.#view;
    v.setUint32(at, id, true);
    v.setUint32(at + 4, size, true);
    v.setUint32(at + 8, nrefs, true);
    v.setUint32(at + 12, 0, true);
    for (let r = 0; r < nrefs; r++) v.setUint32(at + HEADER + 4 * r, NULL_REF, true);
    const base = at + HEADER + 4 * nrefs;
    const bytes = new Uint8Array(this.space.buffer, base, payload);
    for (let i = 0; i < payload; i++) bytes[i] = payloadByte(id, i);
    this.#top = at + size;
    return at;
  }

  setRef(object: number, slot: number, target: number): void {
    this.#view.setUint32(object + HEADER + 4 * slot, target, true);
  }

  read(offset: number): HeapObject {
    const v = this.#view;
    const nrefs = v.getUint32(offset + 8, true);
    const refs: number[] = [];
    for (let r = 0; r < nrefs; r++) refs.push(v.getUint32(offset + HEADER + 4 * r, true));
    return { id: v.getUint32(offset, true), offset, size: v.getUint32(offset + 4, true), refs };
  }

  /** Mark: the offsets of every object reachable from the roots (breadth first, in JS). */
  mark(): Set<number> {
    const live = new Set<number>();
    const queue = this.roots.filter((r) => r !== NULL_REF);
    while (queue.length > 0) {
      const at = queue.pop() as number;
      if (live.has(at)) continue;
      live.add(at);
      for (const ref of this.read(at).refs) if (ref !== NULL_REF && !live.has(ref)) queue.push(ref);
    }
    return live;
  }

  /**
   * Collect, stop-the-world: mark, move every page holding a live object into a fresh to-space
   * (registered on `uffd` for the move, unregistered after so allocation can go on there), fix
   * every reference and root from the forwarding table, and make the to-space the heap.
   */
  collect(uffd: Userfaultfd): { live: number; compaction: Compaction } {
    const live = this.mark();
    const to = this.#toSpace(uffd);
    let compaction: Compaction;
    try {
      compaction = compact(uffd, this.space, to, this.#livePages(live));
    } finally {
      // Allocation continues in the to-space: its unused pages must fault normally again.
      uffd.unregister(to);
    }
    this.#fixUp(live, to, compaction.forwarding);
    this.space.unmap();
    this.#adopt(to, compaction.bytes);
    return { live: live.size, compaction };
  }

  /**
   * Collect, concurrently (the ART pattern): the forwarding table is known at once, so pointers
   * are fixed right away, in the to-space, while most pages have not moved yet: each first touch
   * of a to-space page faults, and the event thread moves that page in on demand. A background
   * pass moves the rest between turns of the event loop. Resolves when every page has moved.
   */
  async collectConcurrent(uffd: Userfaultfd): Promise<{ live: number; compaction: Compaction }> {
    const live = this.mark();
    const to = this.#toSpace(uffd);
    const from = this.space;
    const c = compact(uffd, from, to, this.#livePages(live), { mode: 'concurrent', chunkPages: 8 });
    // The mutator switches to the to-space now: fix-up touches it, faults move pages on demand.
    this.#fixUp(live, to, c.forwarding);
    this.#adopt(to, c.forwarding.size * this.page);
    const compaction = await c.done;
    uffd.unregister(to);
    from.unmap();
    return { live: live.size, compaction };
  }

  #toSpace(uffd: Userfaultfd): Mapping {
    const to = Mapping.anonymous(this.space.length, { hugepage: false });
    to.madvise('DONTFORK');
    uffd.register(to, { missing: true });
    return to;
  }

  #livePages(live: Set<number>): number[] {
    return [...new Set([...live].map((o) => Math.floor(o / this.page)))];
  }

  /** Rewrites every reference of every live object, and the roots, to the new offsets. */
  #fixUp(live: Set<number>, to: Mapping, f: ForwardingTable): void {
    const forward = (offset: number): number => {
      const moved = f.offset(offset);
      if (moved === undefined) throw new Error(`reference to a dead object at ${offset}`);
      return moved;
    };
    const view = new DataView(to.buffer);
    for (const old of live) {
      const at = forward(old);
      const nrefs = view.getUint32(at + 8, true);
      for (let r = 0; r < nrefs; r++) {
        const slot = at + HEADER + 4 * r;
        const ref = view.getUint32(slot, true);
        if (ref !== NULL_REF) view.setUint32(slot, forward(ref), true);
      }
    }
    this.roots = this.roots.map((r) => (r === NULL_REF ? r : forward(r)));
  }

  #adopt(to: Mapping, top: number): void {
    this.space = to;
    this.#view = new DataView(to.buffer);
    this.#top = top;
  }

  /** Checks every byte of the object at `offset`: header, and the payload its id determines. */
  intact(offset: number): boolean {
    const o = this.read(offset);
    const base = offset + HEADER + 4 * o.refs.length;
    const payload = o.size - HEADER - 4 * o.refs.length;
    const bytes = new Uint8Array(this.space.buffer, base, payload);
    for (let i = 0; i < payload; i++) if (bytes[i] !== payloadByte(o.id, i)) return false;
    return true;
  }

  unmap(): void {
    this.space.unmap();
  }
}

/** A random object graph: `objects` objects, each with up to 2 references, `roots` of them rooted. */
export function randomGraph(heap: ToyHeap, objects: number, roots: number, seed = 7): { ids: Map<number, number>; edges: Map<number, number[]> } {
  let x = seed;
  const rand = (n: number): number => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return (x >>> 8) % n;
  };
  const offsets: number[] = [];
  for (let i = 0; i < objects; i++) offsets.push(heap.alloc(rand(3), 16 + rand(400)));
  const ids = new Map<number, number>();
  const edges = new Map<number, number[]>();
  for (const at of offsets) {
    const o = heap.read(at);
    ids.set(at, o.id);
    const targets: number[] = [];
    for (let r = 0; r < o.refs.length; r++) {
      const t = offsets[rand(offsets.length)];
      heap.setRef(at, r, t);
      targets.push(heap.read(t).id);
    }
    edges.set(o.id, targets);
  }
  for (let i = 0; i < roots; i++) heap.roots.push(offsets[rand(offsets.length)]);
  return { ids, edges };
}

/**
 * After a collection: walks the heap from the roots and checks every reachable object's bytes
 * and that each reference leads to the object (by id) it led to before. Returns the ids reached.
 */
export function verify(heap: ToyHeap, edges: Map<number, number[]>): Set<number> {
  const seen = new Set<number>();
  const queue = [...heap.roots];
  while (queue.length > 0) {
    const at = queue.pop() as number;
    const o = heap.read(at);
    if (seen.has(o.id)) continue;
    seen.add(o.id);
    if (!heap.intact(at)) throw new Error(`object ${o.id} at ${at}: bytes differ`);
    const expected = edges.get(o.id);
    const got = o.refs.map((r) => heap.read(r).id);
    if (!expected || expected.join() !== got.join()) throw new Error(`object ${o.id}: references lead to ${got}, expected ${expected}`);
    queue.push(...o.refs);
  }
  return seen;
}
