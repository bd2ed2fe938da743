/** Types of scripts/build-wasm.mjs (for the test that checks the committed kernels). */
export declare const KERNELS: { wat: string; out: string; name: string }[];
export declare function kernelModule(watFile: string, name: string): Promise<string>;
