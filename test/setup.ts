/**
 * Root hooks for the whole suite: reserve huge pages before, give them back after.
 */
import { releaseHugePages, reserveHugePages } from './helpers/hugetlb';

export const mochaHooks = {
  beforeAll(): void {
    reserveHugePages();
  },
  afterAll(): void {
    releaseHugePages();
  },
};
