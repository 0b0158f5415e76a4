/**
 * Bad input never crashes the process: every argument is checked in TS (TypeError for a wrong
 * type, RangeError for a bad value) and again in C++ for callers of the binding itself.
 */
import { expect } from 'chai';
import { Mapping, Pagemap, Userfaultfd, closeShared, compact, openShared, pagemapScan, shareUffd, testing } from '../lib/index';
import { native } from '../lib/core/binding';
import { pageSize } from '../lib/core/sysinfo';
import { rawUffdFd } from './helpers/memtypes';

const page = pageSize();
const MAX_U64 = (1n << 64n) - 1n;

describe('validation: the TS layer', () => {
  let uffd: Userfaultfd;
  let mem: Mapping;
  before(() => {
    uffd = Userfaultfd.open();
    mem = Mapping.anonymous(4 * page);
    uffd.register(mem);
  });
  after(() => {
    uffd.close();
    mem.unmap();
  });

  const badAddresses: [unknown, typeof TypeError | typeof RangeError][] = [
    ['0x1000', TypeError],
    [null, TypeError],
    [undefined, TypeError],
    [{}, TypeError],
    [-4096, RangeError],
    [-1n, RangeError],
    [1.5, RangeError],
    [Number.NaN, RangeError],
    [Number.POSITIVE_INFINITY, RangeError],
    [2 ** 60, RangeError], // not a safe integer
    [MAX_U64 + 1n, RangeError],
  ];

  for (const [value, type] of badAddresses) {
    it(`an address of ${typeof value === 'bigint' ? `${value}n` : typeof value === 'string' ? JSON.stringify(value) : String(value)} is a ${type.name}`, () => {
      expect(() => uffd.copy(value as never, Buffer.alloc(page))).to.throw(type);
      expect(() => uffd.zeropage(value as never, page)).to.throw(type);
      expect(() => uffd.register({ address: value as never, length: page })).to.throw(type);
      expect(() => uffd.move(mem.address, value as never, page)).to.throw(type);
    });
  }

  const badLengths: [unknown, typeof TypeError | typeof RangeError][] = [
    ['4096', TypeError],
    [null, TypeError],
    [0, RangeError],
    [-4096, RangeError],
    [4096.5, RangeError],
    [Number.NaN, RangeError],
    [2 ** 53, RangeError],
  ];
  for (const [value, type] of badLengths) {
    it(`a length of ${typeof value === 'string' ? JSON.stringify(value) : String(value)} is a ${type.name}`, () => {
      expect(() => uffd.zeropage(mem.address, value as never)).to.throw(type);
      expect(() => uffd.wake({ address: mem.address, length: value as never })).to.throw(type);
      expect(() => uffd.poison(mem.address, value as never)).to.throw(type);
      expect(() => uffd.continue(mem.address, value as never)).to.throw(type);
    });
  }

  it('unaligned addresses and lengths are RangeErrors naming the alignment', () => {
    expect(() => uffd.zeropage(mem.address + 1n, page)).to.throw(RangeError, new RegExp(`multiples of ${page}`));
    expect(() => uffd.zeropage(mem.address, page + 1)).to.throw(RangeError);
    expect(() => uffd.copy(mem.address + 8n, Buffer.alloc(page))).to.throw(RangeError);
    expect(() => uffd.move(mem.address, mem.address + 8n, page)).to.throw(RangeError);
    expect(() => uffd.register({ address: mem.address, length: 100 })).to.throw(RangeError);
  });

  it('address + length wrapping around the address space is a RangeError', () => {
    const top = MAX_U64 - BigInt(page) + 1n;
    expect(() => uffd.zeropage(top, 2 * page)).to.throw(RangeError, /overflows/);
    expect(() => uffd.register({ address: top, length: 2 * page })).to.throw(RangeError, /overflows/);
  });

  it('a copy source shorter than the length is a RangeError', () => {
    expect(() => uffd.copy(mem.address, Buffer.alloc(page), 2 * page)).to.throw(RangeError, /source holds/);
    expect(() => uffd.copy(mem.address, 'data' as never, page)).to.throw(TypeError);
  });

  it('a copy source may be a Buffer, any TypedArray, a DataView or an ArrayBuffer', () => {
    const sources = [Buffer.alloc(page, 1), new Uint32Array(page / 4).fill(0x02020202), new DataView(new ArrayBuffer(page)), new ArrayBuffer(page)];
    sources.forEach((src, i) => {
      expect(uffd.copy(mem.address + BigInt(i * page), src)).to.equal(page);
    });
    expect(new Uint8Array(mem.buffer)[page]).to.equal(2);
    mem.madvise('DONTNEED');
  });

  it('options must be objects with booleans', () => {
    expect(() => uffd.copy(mem.address, Buffer.alloc(page), page, 'wake' as never)).to.throw(TypeError, /options/);
    expect(() => uffd.copy(mem.address, Buffer.alloc(page), page, { wake: 'no' as never })).to.throw(TypeError, /wake/);
    expect(() => uffd.register(mem, { wp: 1 as never })).to.throw(TypeError, /wp/);
    expect(() => uffd.writeProtect(mem, 'on' as never)).to.throw(TypeError, /boolean/);
    expect(() => uffd.register(null as never)).to.throw(TypeError, /range/);
    expect(() => uffd.registerMode(mem, 1 as never)).to.throw(TypeError, /bigint/);
  });

  it('mapping constructors check their arguments', () => {
    expect(() => Mapping.anonymous(0)).to.throw(RangeError);
    expect(() => Mapping.anonymous(page + 1)).to.throw(RangeError, /multiple of the page size/);
    expect(() => Mapping.anonymous('4096' as never)).to.throw(TypeError);
    expect(() => Mapping.anonymous(page, { prot: 'rwz' as never })).to.throw(TypeError, /prot/);
    expect(() => Mapping.memfd(page, { name: 5 as never })).to.throw(TypeError, /name/);
    expect(() => Mapping.file({} as never)).to.throw(TypeError, /path or a file descriptor/);
    expect(() => Mapping.file('/dev/null', { offset: 3 })).to.throw(RangeError, /offset/);
  });

  // Issue #10 item 8: these reached the engine (or Node-API's bare "Invalid argument") uncoded.
  it('a SharedArrayBuffer copy source, or a view over one, is a coded TypeError naming src', () => {
    const sab = new SharedArrayBuffer(page);
    for (const src of [sab, new Uint8Array(sab), new DataView(sab), new Float64Array(sab)]) {
      expect(() => uffd.copy(mem.address, src as never, page))
        .to.throw(TypeError, /^src must not be a SharedArrayBuffer/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
    }
  });

  it('a SharedArrayBuffer copyFrom policy is a coded TypeError naming copyFrom', () => {
    const sab = new SharedArrayBuffer(mem.length);
    for (const copyFrom of [sab, new Uint8Array(sab)]) {
      expect(() => uffd.handle(mem, { copyFrom } as never))
        .to.throw(TypeError, /^copyFrom must not be a SharedArrayBuffer/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
    }
  });

  it('null, undefined and bad fds given to openShared/closeShared are coded errors naming the argument', () => {
    for (const fn of [openShared, closeShared]) {
      for (const bad of [null, undefined, 5, 'x']) {
        expect(() => fn(bad as never))
          .to.throw(TypeError, /^shared must be the object shareUffd\(\) returned/)
          .with.property('code', 'ERR_INVALID_ARG_TYPE');
      }
      expect(() => fn({ fd: null } as never))
        .to.throw(TypeError, /^shared\.fd must be a file descriptor number/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => fn({ fd: -1 } as never))
        .to.throw(RangeError, /^shared\.fd/)
        .with.property('code', 'ERR_OUT_OF_RANGE');
    }
  });

  it('a feature that is not a name is a coded error naming option features, before any descriptor is adopted', () => {
    expect(() => Userfaultfd.open({ features: [1 as never] }))
      .to.throw(TypeError, /^option features: unknown feature number 1/)
      .with.property('code', 'ERR_INVALID_ARG_VALUE');
    const shared = shareUffd(uffd);
    try {
      for (const features of [[1], [null], ['NOPE']]) {
        expect(() => openShared({ ...shared, features: features as never }))
          .to.throw(TypeError, /^option features: unknown feature/)
          .with.property('code', 'ERR_INVALID_ARG_VALUE');
        expect(() => Userfaultfd.fromFd(shared.fd, { features: features as never }))
          .to.throw(TypeError, /^option features: unknown feature/)
          .with.property('code', 'ERR_INVALID_ARG_VALUE');
      }
      expect(() => Userfaultfd.fromFd(shared.fd, { features: 'MOVE' as never }))
        .to.throw(TypeError, /^option features must be an array of feature names or a feature set/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
      // The refused openShared did not adopt (and so did not close) the descriptor.
      openShared(shared).close();
    } catch (err) {
      closeShared(shared);
      throw err;
    }
  });

  it('an events() signal that is not an AbortSignal is a coded TypeError naming option signal', () => {
    for (const signal of [1, {}, 'x', { aborted: false }]) {
      expect(() => uffd.events({ signal: signal as never }))
        .to.throw(TypeError, /^option signal must be an AbortSignal/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
    }
  });

  // Found by the fuzz suite (test/fuzz.test.ts): engine TypeErrors where a coded error belongs.
  it('shareUffd of something that is not a Userfaultfd is a coded TypeError', () => {
    for (const bad of [undefined, null, {}, 3]) {
      expect(() => shareUffd(bad as never))
        .to.throw(TypeError, /^uffd must be a Userfaultfd/)
        .with.property('code', 'ERR_INVALID_ARG_TYPE');
    }
  });

  it('error messages describe any value without throwing (a view of a detached buffer, a symbol, a bigint)', () => {
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    for (const bad of [detached, Symbol('s'), 5n]) {
      expect(() => Pagemap.open(bad as never)).to.throw(TypeError, /option pid/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => pagemapScan({ start: mem.address, end: mem.address + BigInt(page), categories: [bad as never] }))
        .to.throw(TypeError, /unknown page category/)
        .with.property('code', 'ERR_INVALID_ARG_VALUE');
    }
  });

  it('the testing helpers refuse a missing range, an unknown mode or an inherited advice name with coded errors', async () => {
    const detached = new Uint8Array(8);
    structuredClone(detached.buffer, { transfer: [detached.buffer] });
    const rejects = async (p: () => Promise<unknown>, code: string, re: RegExp) => {
      const err = await p().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err, String(re)).to.be.instanceOf(Error).with.property('code', code);
      expect((err as Error).message).to.match(re);
    };
    await rejects(() => testing.forkTouch(null as never), 'ERR_INVALID_ARG_TYPE', /forkTouch: range must be/);
    await rejects(() => testing.forkTouch(mem, { mode: detached as never }), 'ERR_INVALID_ARG_TYPE', /unknown mode an object/);
    await rejects(() => testing.madvise(undefined as never, 'DONTNEED'), 'ERR_INVALID_ARG_TYPE', /madvise: range must be/);
    await rejects(() => testing.madvise(mem, 'toString' as never), 'ERR_INVALID_ARG_TYPE', /unknown advice/);
  });

  it('compact() checks uffd, from and to even when nothing is live; forwarding lookups check their argument', () => {
    const to = Mapping.anonymous(page);
    try {
      expect(() => compact(uffd, ' ' as never, to, [])).to.throw(TypeError, /from and to must be Mappings/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => compact({} as never, to, to, [])).to.throw(TypeError, /uffd must be a Userfaultfd/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      const { forwarding } = compact(uffd, to, to, []);
      expect(() => forwarding.address({} as never)).to.throw(TypeError, /address/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => forwarding.page(Symbol('p') as never)).to.throw(TypeError, /page must be a number/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(() => forwarding.offset(1n as never)).to.throw(TypeError, /offset must be a number/).with.property('code', 'ERR_INVALID_ARG_TYPE');
      expect(forwarding.address(0)).to.equal(undefined);
    } finally {
      to.unmap();
    }
  });

  it('a huge mapping request fails with ENOMEM, not a crash', () => {
    expect(() => Mapping.anonymous(2 ** 52)).to.throw(Error).with.property('code', 'ENOMEM');
  });
});

describe('validation: the native layer, called directly', () => {
  const garbage: unknown[] = [undefined, null, true, 'x', {}, [], -1, 1.5, Number.NaN, -1n, 1n << 70n, () => 0, Symbol('s')];

  it('every UffdHandle method throws (never crashes) on garbage in every position', () => {
    const fd = rawUffdFd();
    native.apiHandshake(fd, 0n);
    const h = new native.UffdHandle(fd, true);
    const methods = ['register', 'unregister', 'wake', 'copy', 'zeropage', 'writeProtect', 'continue', 'poison', 'move'] as const;
    let threw = 0;
    for (const m of methods) {
      for (const g of garbage) {
        for (let pos = 0; pos < 4; pos++) {
          const args: unknown[] = [0x10000n, 0x10000n, page, 0n];
          args[pos] = g;
          try {
            (h[m] as (...a: unknown[]) => unknown)(...args);
          } catch (e) {
            expect(e).to.be.instanceOf(Error);
            threw++;
          }
        }
      }
    }
    expect(threw).to.be.greaterThan(methods.length * garbage.length * 2);
    h.close();
  });

  it('unknown mode bits are RangeErrors in C++', () => {
    const fd = rawUffdFd();
    native.apiHandshake(fd, 0n);
    const h = new native.UffdHandle(fd, true);
    expect(() => h.register(0x10000n, page, 8n)).to.throw(RangeError, /unknown mode bits/);
    expect(() => h.copy(0x10000n, 0x20000n, page, 4n)).to.throw(RangeError, /unknown mode bits/);
    expect(() => h.move(0x10000n, 0x20000n, page, 4n)).to.throw(RangeError, /unknown mode bits/);
    expect(() => h.zeropage(0x10000n, 0, 0n)).to.throw(RangeError, /greater than 0/);
    expect(() => h.copy(0x10000n, Buffer.alloc(10), page, 0n)).to.throw(RangeError, /source holds/);
    h.close();
  });

  it('MappingHandle refuses MAP_FIXED and unknown prot bits', () => {
    const MAP_FIXED = 0x10;
    expect(() => new native.MappingHandle(page, 3, 0x22 | MAP_FIXED, -1, 0)).to.throw(RangeError, /mmap flags/);
    expect(() => new native.MappingHandle(page, 8, 0x22, -1, 0)).to.throw(RangeError, /prot/);
    expect(() => new native.MappingHandle(0, 3, 0x22, -1, 0)).to.throw(RangeError);
    expect(() => new native.MappingHandle(page, 3, 0x22, -1, 1)).to.throw(RangeError, /offset/);
  });

  it('a method borrowed onto the wrong object throws', () => {
    const m = new native.MappingHandle(page, 3, 0x22, -1, 0);
    const fd = rawUffdFd();
    const h = new native.UffdHandle(fd, true);
    expect(() => (h.wake as (...a: unknown[]) => unknown).call(m, 0x10000n, page)).to.throw(TypeError);
    expect(() => (m.unmap as () => void).call({})).to.throw(TypeError);
    h.close();
    m.unmap();
  });

  it('pagemapScan checks its arrays', () => {
    expect(() => native.pagemapScan(0, new Uint32Array(24) as never, null)).to.throw(TypeError, /BigUint64Array/);
    expect(() => native.pagemapScan(0, new BigUint64Array(3), null)).to.throw(RangeError, /12 words/);
    const args = new BigUint64Array(12);
    args[6] = 10n;
    expect(() => native.pagemapScan(0, args, new BigUint64Array(3))).to.throw(RangeError, /vec_len/);
  });

  it('the other exports check their arguments', () => {
    expect(() => native.openUffd(7 as never, true)).to.throw(RangeError);
    expect(() => native.apiHandshake('x' as never, 0n)).to.throw(TypeError);
    expect(() => native.memfdCreate(5 as never, 0)).to.throw(TypeError);
    expect(() => native.memfdCreate('x', 1 << 20)).to.throw(RangeError);
    expect(() => native.dupFd(-1)).to.throw(RangeError);
    expect(() => native.closeFd(1.5)).to.throw(RangeError);
  });
});
