/**
 * UFFDIO_REGISTER / UNREGISTER per memory type: the ioctls each mode allows (all 8 mode
 * combinations, as uffd-unit-tests' register-ioctls), EBUSY, EPERM, and unregister.
 */
import { expect } from 'chai';
import { Mapping, Userfaultfd, UffdError, type IoctlName } from '../lib/index';
import { pageSize } from '../lib/core/sysinfo';
import { MEMTYPES, kernel, skipIf, unavailable, type MemType } from './helpers/memtypes';

const MISSING = 1n;
const WP = 2n;
const MINOR = 4n;

/** What the kernel should answer for `mode` on `type`: an errno code, or the allowed ioctls. */
function expected(type: MemType, mode: bigint): { code: string } | { ioctls: IoctlName[] } {
  if (mode === 0n) return { code: 'EINVAL' };
  if (mode & MINOR && type.name === 'anon') return { code: 'EINVAL' };
  const ioctls: IoctlName[] = ['WAKE', 'COPY'];
  if (!type.hugetlb) ioctls.push('ZEROPAGE');
  if (!type.hugetlb && kernel().features.MOVE) ioctls.push('MOVE');
  if (mode & WP) ioctls.push('WRITEPROTECT');
  if (mode & MINOR) ioctls.push('CONTINUE');
  if (kernel().features.POISON) ioctls.push('POISON');
  return { ioctls };
}

/** The features a registration with `mode` on `type` needs. */
function needs(type: MemType, mode: bigint): (string | undefined)[] {
  // MINOR registers on every hugetlb mapping, private ones too (only CONTINUE needs a page cache).
  const minor = type.hugetlb ? 'MINOR_HUGETLBFS' : type.minorFeature;
  return [mode & MISSING ? type.missingFeature : undefined, mode & WP ? type.wpFeature : undefined, mode & MINOR && type.name !== 'anon' ? minor : undefined];
}

for (const type of MEMTYPES) {
  describe(`register [${type.name}]`, () => {
    for (let m = 0n; m < 8n; m++) {
      const names = [m & MISSING ? 'missing' : '', m & WP ? 'wp' : '', m & MINOR ? 'minor' : ''].filter(Boolean).join('+') || 'none';
      it(`mode ${names}: ${'code' in expected(MEMTYPES[0], m) && m === 0n ? 'EINVAL' : 'the allowed ioctls'}`, function () {
        skipIf(this, unavailable(type, ...(needs(type, m) as never[])));
        using uffd = Userfaultfd.open();
        using mem = type.create(2);
        const want = expected(type, m);
        if ('code' in want) {
          expect(() => uffd.registerMode(mem, m)).to.throw(UffdError).with.property('code', want.code);
        } else {
          expect(uffd.registerMode(mem, m)).to.have.members(want.ioctls);
          uffd.unregister(mem);
        }
      });
    }

    it('a second userfaultfd registering the same range is EBUSY', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using a = Userfaultfd.open();
      using b = Userfaultfd.open();
      using mem = type.create(2);
      a.register(mem);
      expect(() => b.register(mem)).to.throw(UffdError).that.includes({ code: 'EBUSY', ioctl: 'UFFDIO_REGISTER' });
      a.unregister(mem);
      expect(b.register(mem)).to.include('COPY');
    });

    it('registering the same range twice on one userfaultfd is allowed', function () {
      skipIf(this, unavailable(type, type.missingFeature));
      using uffd = Userfaultfd.open();
      using mem = type.create(2);
      uffd.register(mem);
      expect(uffd.register(mem)).to.include('COPY');
    });
  });
}

describe('register: mappings that cannot be registered', () => {
  it('a read-only shared file mapping is EPERM', () => {
    // The file must be one userfaultfd can serve at all (shmem), else the answer is EINVAL
    // before the kernel looks at write permission: reopen a memfd read-only through /proc.
    using backing = Mapping.memfd(2 * pageSize(), { name: 'uffd-ro' });
    using mem = Mapping.file(`/proc/self/fd/${backing.fd}`, { prot: 'r', shared: true });
    using uffd = Userfaultfd.open();
    expect(() => uffd.register(mem)).to.throw(UffdError).that.includes({ code: 'EPERM', errno: -1, syscall: 'ioctl' });
  });

  it('a range with no mapping is ENOMEM or EINVAL', () => {
    using uffd = Userfaultfd.open();
    using mem = Mapping.anonymous(4 * pageSize());
    const address = mem.address;
    mem.unmap();
    expect(() => uffd.register({ address, length: 4 * pageSize() }))
      .to.throw(UffdError)
      .with.property('code')
      .that.is.oneOf(['ENOMEM', 'EINVAL']);
  });

  it('a hugetlb range that is not huge-page aligned is EINVAL', function () {
    const type = MEMTYPES.find((t) => t.name === 'hugetlb-private')!;
    skipIf(this, unavailable(type, type.missingFeature));
    using uffd = Userfaultfd.open();
    using mem = type.create(2);
    expect(() => uffd.register({ address: mem.address, length: pageSize() })).to.throw(UffdError).with.property('code', 'EINVAL');
  });

  it('unregister lets a second userfaultfd take the range', () => {
    using a = Userfaultfd.open();
    using b = Userfaultfd.open();
    using mem = Mapping.anonymous(2 * pageSize());
    a.register(mem);
    a.unregister(mem);
    expect(b.register(mem, { missing: true })).to.include('ZEROPAGE');
  });
});
