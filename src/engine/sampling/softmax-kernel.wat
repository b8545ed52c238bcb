;; Vocabulary-wide passes of sampling, 8 entries a step in two 4-lane vectors
;; (WebAssembly SIMD; independent vectors and accumulators keep the dependency
;; chains short). Memory: logits (float32) at byte 0, weights (float32) at byte
;; $w; both padded to a multiple of 8 entries, the logits' padding -Infinity
;; (weight 0). Source of softmax-kernel-bytes.ts: regenerate with
;; `node tools/build-wasm.mjs`.
(module
  (memory (export "memory") 1)

  ;; The largest of logits[0, n8) (n8 a multiple of 8); NaN if any is NaN.
  (func (export "max") (param $n8 i32) (result f32)
    (local $i i32) (local $end i32) (local $a v128) (local $b v128) (local $m1 v128) (local $m2 v128) (local $nan v128)
    (local.set $m1 (f32x4.splat (f32.const -inf)))
    (local.set $m2 (local.get $m1))
    (local.set $end (i32.shl (local.get $n8) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $a (v128.load (local.get $i)))
        (local.set $b (v128.load offset=16 (local.get $i)))
        ;; pmax is one instruction but passes NaN over: NaNs are caught by x != x.
        (local.set $m1 (f32x4.pmax (local.get $m1) (local.get $a)))
        (local.set $m2 (f32x4.pmax (local.get $m2) (local.get $b)))
        (local.set $nan (v128.or (local.get $nan) (v128.or (f32x4.ne (local.get $a) (local.get $a)) (f32x4.ne (local.get $b) (local.get $b)))))
        (local.set $i (i32.add (local.get $i) (i32.const 32)))
        (br $next)))
    (if (v128.any_true (local.get $nan)) (then (return (f32.const nan))))
    (local.set $m1 (f32x4.pmax (local.get $m1) (local.get $m2)))
    (f32.max
      (f32.max (f32x4.extract_lane 0 (local.get $m1)) (f32x4.extract_lane 1 (local.get $m1)))
      (f32.max (f32x4.extract_lane 2 (local.get $m1)) (f32x4.extract_lane 3 (local.get $m1)))))

;; weights[i] = exp((logits[i] - max) * invT) for i < n8; returns their sum (float64).
  ;; exp(x) for x <= 0 is 0 where x <= -87 (under float32's smallest normal, -Infinity
  ;; included); else 2^k e^g with k = round(x log2 e), g = x - k ln 2, |g| <= 0.35,
  ;; and e^g by its Taylor polynomial of degree 7 (truncation error under 1e-8
  ;; relative, below float32 rounding). k is rounded by adding 1.5 * 2^23: the sum's
  ;; low mantissa bits are then k, and shifting them into the exponent field (with
  ;; the bias) makes 2^k. (Written out inline: a call per vector was 4x slower.)
  (func (export "expWeights") (param $n8 i32) (param $w i32) (param $max f32) (param $invT f32) (result f64)
    (local $i i32) (local $end i32) (local $x v128) (local $y v128) (local $t v128) (local $k v128) (local $g v128) (local $p v128) (local $e v128)
    (local $s1 v128) (local $s2 v128) (local $vmax v128) (local $vinvT v128)
    ;; Constants in locals: splatted inside the loop, they were rebuilt every step.
    (local $c0 v128) (local $c1 v128) (local $c2 v128) (local $c3 v128) (local $c4 v128) (local $c5 v128) (local $c6 v128) (local $c7 v128) (local $c8 v128) (local $c9 v128) (local $c10 v128) (local $c11 v128)
    (local.set $c0 (f32x4.splat (f32.const 1.4426950408889634)))
    (local.set $c1 (f32x4.splat (f32.const -126)))
    (local.set $c2 (f32x4.splat (f32.const 12582912)))
    (local.set $c3 (f32x4.splat (f32.const 0.6931471805599453)))
    (local.set $c4 (f32x4.splat (f32.const 0.0013888888888888889)))
    (local.set $c5 (f32x4.splat (f32.const 0.0001984126984126984)))
    (local.set $c6 (f32x4.splat (f32.const 0.008333333333333333)))
    (local.set $c7 (f32x4.splat (f32.const 0.041666666666666664)))
    (local.set $c8 (f32x4.splat (f32.const 0.16666666666666666)))
    (local.set $c9 (f32x4.splat (f32.const 0.5)))
    (local.set $c10 (f32x4.splat (f32.const 1)))
    (local.set $c11 (f32x4.splat (f32.const -87)))
    (local.set $vmax (f32x4.splat (local.get $max)))
    (local.set $vinvT (f32x4.splat (local.get $invT)))
    (local.set $end (i32.shl (local.get $n8) (i32.const 2)))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        (local.set $x (f32x4.mul (f32x4.sub (v128.load (local.get $i)) (local.get $vmax)) (local.get $vinvT)))
        (local.set $y (f32x4.pmax (f32x4.mul (local.get $x) (local.get $c0)) (local.get $c1)))
        (local.set $t (f32x4.add (local.get $y) (local.get $c2)))
        (local.set $k (f32x4.sub (local.get $t) (local.get $c2)))
        (local.set $g (f32x4.mul (f32x4.sub (local.get $y) (local.get $k)) (local.get $c3)))
        ;; e^g = 1 + g + g^2/2! + ... + g^7/7!, in Horner form.
        (local.set $p (f32x4.add (local.get $c4) (f32x4.mul (local.get $g) (local.get $c5))))
        (local.set $p (f32x4.add (local.get $c6) (f32x4.mul (local.get $g) (local.get $p))))
        (local.set $p (f32x4.add (local.get $c7) (f32x4.mul (local.get $g) (local.get $p))))
        (local.set $p (f32x4.add (local.get $c8) (f32x4.mul (local.get $g) (local.get $p))))
        (local.set $p (f32x4.add (local.get $c9) (f32x4.mul (local.get $g) (local.get $p))))
        (local.set $p (f32x4.add (local.get $c10) (f32x4.mul (local.get $g) (local.get $p))))
        (local.set $p (f32x4.add (local.get $c10) (f32x4.mul (local.get $g) (local.get $p))))
        ;; bits(t) = bits(1.5 * 2^23) + k = 0x4B400000 + k; 2^k = (k + 127) << 23.
        (local.set $e
          (v128.and
            (f32x4.mul (local.get $p) (i32x4.shl (i32x4.add (local.get $t) (i32x4.splat (i32.const -1262485377))) (i32.const 23)))
            (f32x4.gt (local.get $x) (local.get $c11))))
        (v128.store (i32.add (local.get $w) (local.get $i)) (local.get $e))
        (local.set $s1 (f64x2.add (local.get $s1) (f64x2.promote_low_f32x4 (local.get $e))))
        (local.set $s2 (f64x2.add (local.get $s2) (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $e) (local.get $e)))))
        (local.set $i (i32.add (local.get $i) (i32.const 16)))
        (br $next)))
    (local.set $s1 (f64x2.add (local.get $s1) (local.get $s2)))
    (f64.add (f64x2.extract_lane 0 (local.get $s1)) (f64x2.extract_lane 1 (local.get $s1))))
)
