;; The chip input kernel (worker/chip-input.ts): uint16 band values to the models' float32 input,
;; and the nodata mask, 8 values at a time with WebAssembly SIMD.
;; Compiled by `node scripts/build-wasm.mjs` into worker/chip-input-wasm.ts (test/chip-input.test.ts
;; checks that the committed bytes are this file's).
(module
  (memory (export "memory") 1)

  ;; For i < n: v = u16[src + 2i]; f32[dst + 4i] = max(v - off, 0) (exact: v < 2^16); u8[nd + i] = 1
  ;; where v = 0 (other bytes of nd are left as they are, so the 12 bands of a chip accumulate).
  (func (export "prep") (param $src i32) (param $dst i32) (param $nd i32) (param $n i32) (param $off i32)
    (local $i i32) (local $n8 i32) (local $v v128) (local $o v128) (local $s v128) (local $t i32) (local $z v128)
    (local.set $o (i16x8.splat (local.get $off)))
    (local.set $n8 (i32.and (local.get $n) (i32.const -8)))
    (block $simd_done
      (loop $simd
        (br_if $simd_done (i32.ge_u (local.get $i) (local.get $n8)))
        (local.set $v (v128.load align=1 (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
        ;; max(v - off, 0): unsigned saturating subtraction.
        (local.set $s (i16x8.sub_sat_u (local.get $v) (local.get $o)))
        (v128.store align=1 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (f32x4.convert_i32x4_s (i32x4.extend_low_i16x8_u (local.get $s))))
        (v128.store align=1 (i32.add (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2))) (i32.const 16))
          (f32x4.convert_i32x4_s (i32x4.extend_high_i16x8_u (local.get $s))))
        ;; Zero lanes as bytes 0/1, OR-ed into the 8 nodata bytes; most rows have none.
        (local.set $z (i16x8.eq (local.get $v) (v128.const i16x8 0 0 0 0 0 0 0 0)))
        (if (v128.any_true (local.get $z))
          (then
            (i64.store align=1 (i32.add (local.get $nd) (local.get $i))
              (i64.or
                (i64.load align=1 (i32.add (local.get $nd) (local.get $i)))
                (i64x2.extract_lane 0
                  (v128.and
                    (i8x16.narrow_i16x8_s (local.get $z) (local.get $z))
                    (v128.const i8x16 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $simd)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $t (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $i) (i32.const 1)))))
        (if (i32.eqz (local.get $t))
          (then (i32.store8 (i32.add (local.get $nd) (local.get $i)) (i32.const 1))))
        (local.set $t (i32.sub (local.get $t) (local.get $off)))
        (f32.store align=1 (i32.add (local.get $dst) (i32.shl (local.get $i) (i32.const 2)))
          (f32.convert_i32_s (select (local.get $t) (i32.const 0) (i32.gt_s (local.get $t) (i32.const 0)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $tail)))
  )

  ;; The number of set bytes among u8[nd .. nd + n) (each 0 or 1).
  (func (export "count") (param $nd i32) (param $n i32) (result i32)
    (local $i i32) (local $n8 i32) (local $c i64) (local $b i32)
    (local.set $n8 (i32.and (local.get $n) (i32.const -8)))
    (block $words_done
      (loop $words
        (br_if $words_done (i32.ge_u (local.get $i) (local.get $n8)))
        (local.set $c (i64.add (local.get $c) (i64.popcnt (i64.load align=1 (i32.add (local.get $nd) (local.get $i))))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $words)))
    (local.set $b (i32.wrap_i64 (local.get $c)))
    (block $tail_done
      (loop $tail
        (br_if $tail_done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $b (i32.add (local.get $b) (i32.load8_u (i32.add (local.get $nd) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $tail)))
    (local.get $b))
)
