;; Traps (integer divide by zero) two named calls deep.
(module
  (memory (export "memory") 1)
  (func $divide (param i32 i32) (result i32)
    (i32.div_s (local.get 0) (local.get 1)))
  (func $compute (result i32)
    (call $divide (i32.const 1) (i32.const 0)))
  (func $main (export "_start")
    (drop (call $compute))))
