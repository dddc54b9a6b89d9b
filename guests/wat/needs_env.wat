;; Imports a function no host provides.
(module
  (import "env" "missing_fn" (func))
  (func (export "_start") (call 0)))
