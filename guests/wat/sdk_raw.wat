;; wedge ABI v1 spoken directly, without the Go SDK: answers "raw abi <n>"
;; where n counts `_initialize` runs in this instance. Its `_initialize`
;; reads the request head, which only an invocation has: the snapshot
;; cannot be taken, and wedge serves it initialising in every invocation.
(module
  (import "wedge_v1" "request_head" (func $head (param i32 i32) (result i32)))
  (import "wedge_v1" "response_head" (func $respond (param i32 i32) (result i32)))
  (import "wedge_v1" "body_write" (func $write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $inits (mut i32) (i32.const 0))
  ;; The response head record: 4 strings, each a length and its bytes.
  (data (i32.const 0) "\04\00\00\00"
    "\07\00\00\00:status" "\03\00\00\00200"
    "\0c\00\00\00content-type" "\0a\00\00\00text/plain")
  (data (i32.const 100) "raw abi 0\n")
  (func (export "_initialize")
    (drop (call $head (i32.const 0) (i32.const 0)))
    (global.set $inits (i32.add (global.get $inits) (i32.const 1))))
  (func (export "wedge_handle_v1") (result i32)
    (drop (call $respond (i32.const 0) (i32.const 52)))
    ;; The digit: '0' + inits.
    (i32.store8 (i32.const 108) (i32.add (i32.const 48) (global.get $inits)))
    (drop (call $write (i32.const 100) (i32.const 10)))
    (i32.const 0)))
