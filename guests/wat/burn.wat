;; Counts down from 10 million, then exits 0: a fixed amount of work for
;; fuel tests (enough fuel finishes it, too little runs out).
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $n i32)
    (local.set $n (i32.const 10000000))
    (loop $again
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $again (i32.ne (local.get $n) (i32.const 0))))))
