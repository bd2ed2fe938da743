/**
 * What every http(s) request of the raster layer carries: extra headers (a token, a signed-access
 * cookie) sent on STAC item fetches, GeoTIFF range reads and mask GML fetches.
 * Passed explicitly, never put into tile jobs (secrets would land in the JetStream store), and
 * never part of a message: errors name the URL, not the headers.
 */

export interface HttpOptions {
  /** Header name -> value, sent on every request. Default: none. */
  headers?: Readonly<Record<string, string>>;
}

/** `init` with the options' headers under its own (a request's own header wins). */
export function requestInit(init: RequestInit, http: HttpOptions | undefined): RequestInit {
  if (!http?.headers || Object.keys(http.headers).length === 0) return init;
  return { ...init, headers: { ...http.headers, ...(init.headers as Record<string, string> | undefined) } };
}
