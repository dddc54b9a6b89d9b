module wedge.dev/examples/go-sdk

go 1.24

require wedge.dev/sdk v0.0.0

replace wedge.dev/sdk => ../../sdk/go
