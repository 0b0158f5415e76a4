/**
 * Checks that a descriptor handed to us is what we think it is, before anything adopts it.
 * @module
 * @internal
 */
import * as fs from 'node:fs';
import { constants as osConstants } from 'node:os';
import { UffdError, invalidType } from './errors';

const USERFAULTFD = 'anon_inode:[userfaultfd]';

/**
 * Throws a TypeError with code ERR_UFFD_NOT_USERFAULTFD unless `fd` is a userfaultfd, as
 * /proc/self/fd tells. The native handle checks again; this one names the fd before any dup.
 * An fd that is not open is an EBADF UffdError.
 */
export function checkUserfaultfd(fd: number): void {
  let target: string;
  try {
    target = fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (err) {
    // No such link: the descriptor is not open. Said as the kernel would, a system error.
    if ((err as { code?: string }).code === 'ENOENT') {
      throw Object.assign(new UffdError({ errno: -osConstants.errno.EBADF, syscall: 'readlink', path: `/proc/self/fd/${fd}` }), { fd });
    }
    throw err;
  }
  if (target !== USERFAULTFD) {
    throw Object.assign(invalidType(`fd ${fd} is not a userfaultfd (it is ${target}); only a descriptor whose /proc/self/fd link reads ${USERFAULTFD} can be adopted`), {
      code: 'ERR_UFFD_NOT_USERFAULTFD',
      fd,
    });
  }
}
