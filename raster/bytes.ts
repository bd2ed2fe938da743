/** Byte-buffer helpers shared by the readers. */

/**
 * The bytes of `view` as an ArrayBuffer of their own (what geotiff.js's decoders take, and may
 * keep or transfer): the view's buffer when the view is the whole of it, else a copy.
 */
export function ownBuffer(view: Uint8Array): ArrayBuffer {
  // new Uint8Array(view) copies; a Buffer's slice() would not.
  return view.byteOffset === 0 && view.byteLength === view.buffer.byteLength ? (view.buffer as ArrayBuffer) : new Uint8Array(view).buffer;
}
