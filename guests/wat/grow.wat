;; Grows memory one page at a time until memory.grow returns -1 (or 4096
;; pages, 256 MiB), then exits with the number of pages it holds (mod 256).
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (block $done
      (loop $more
        (br_if $done (i32.ge_u (memory.size) (i32.const 4096)))
        (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more)))
    (call $proc_exit (i32.and (memory.size) (i32.const 255)))))
