/**
 * The Worker of the "JS handler in a Worker" fault case: it owns the fault loop with blocking
 * readEvents() (serveFaults) and resolves each fault with uffd.copy from the source mapping at
 * the fault's offset, the same work as the C reference's handler thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openShared, pageSize, serveFaults, type SharedUffd } from '../../lib/index';

export interface FaultServerData {
  uffd: SharedUffd;
  /** The registered area's address and the source's (the source outlives this Worker). */
  area: bigint;
  source: bigint;
  /** Set to 1 by the owner to stop serving. */
  stop: Int32Array;
}

const data = workerData as FaultServerData;
const uffd = openShared(data.uffd);
const page = pageSize();
parentPort?.postMessage('ready');
const served = serveFaults(
  uffd,
  (ev) => {
    if (ev.type === 'pagefault') uffd.copy(ev.address, data.source + (ev.address - data.area), page);
  },
  { stop: data.stop },
);
uffd.close();
parentPort?.postMessage(served);
