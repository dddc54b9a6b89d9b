;; Loops forever without calling the host.
(module
  (memory (export "memory") 1)
  (func $spin (export "_start")
    (loop $again (br $again))))
