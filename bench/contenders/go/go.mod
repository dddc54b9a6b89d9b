module wedgebench

go 1.27

require wedge.dev/sdk v0.0.0

replace wedge.dev/sdk => ../../../sdk/go
