;; A WAGI function that burns CPU in a named function (`work`, called from
;; `handle`), then answers: something for the profiler to see.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\n\nbusy\n")
  (func $work (param $n i32) (result i32)
    (local $acc i32)
    (loop $again
      (local.set $acc (i32.add (local.get $acc) (i32.mul (local.get $n) (i32.const 31))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (i32.ne (local.get $n) (i32.const 0))))
    (local.get $acc))
  (func $handle
    (drop (call $work (i32.const 20000000)))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 31))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
  (func $start (export "_start") (call $handle)))
