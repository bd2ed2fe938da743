/**
 * When the http I/O thread starts: with the opening of a remote file, so that its start passes
 * during the opening's own request rather than before the first tile read (raster/http-range.ts,
 * startIoThreadEarly). Its own file: useIoThread() holds for the rest of the thread that calls it.
 */
import { afterAll, beforeAll, expect, test } from 'vitest';
import { ioThreadRunning, useIoThread } from '../raster/http-range.ts';
import { closeTiff, openTiff } from '../raster/tiff-file.ts';
import { SAMPLE } from './helpers/cli.ts';
import { startStaticServer, type StaticServer } from './helpers/http-server.ts';

let server: StaticServer;
beforeAll(async () => {
  server = await startStaticServer(SAMPLE);
});
afterAll(async () => {
  await server.close();
});

test('opening a remote file starts the I/O thread; a local one does not; without useIoThread nothing starts', async () => {
  await closeTiff((await openTiff(`${server.url}/B02.tif`, 'band B02')).tiff);
  expect(ioThreadRunning()).toBe(false);
  useIoThread();
  await closeTiff((await openTiff(`${SAMPLE}/B02.tif`, 'band B02')).tiff);
  expect(ioThreadRunning()).toBe(false);
  const before = server.requests.length;
  const file = await openTiff(`${server.url}/B03.tif`, 'band B03');
  // Only the opening's request went out (the header fits its first block), and the thread is up for the tiles.
  expect(server.requests.length - before).toBe(1);
  expect(ioThreadRunning()).toBe(true);
  await closeTiff(file.tiff);
});
